"""Sampling precision: fp32 stays exact, bf16 / int8 run and are chosen by the processor, bad requests are refused."""

import pytest
import torch
from tiny_pipelines import tiny_class_pipeline, tiny_text_transformer

from nextscale.sampling import precision
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.precision import Precision, cast_linear_weights, choose_precision
from nextscale.transformer.conditioning import TextCondition


@pytest.mark.parametrize(
    "flags, expected, decoder",
    [
        ({"avx512_bf16", "avx512_vnni"}, "int8", torch.bfloat16),  # the project's CPU: measured fastest
        ({"amx_bf16"}, "bf16", torch.bfloat16),
        ({"avx_vnni"}, "int8", None),  # no native bf16: the decoder stays float32
        ({"avx2", "fma"}, "int8", None),  # fbgemm's AVX2 kernels: 1.66x over the official steps where bf16 crawls
        ({"sse4_2"}, "fp32", None),
    ],
)
def test_auto_follows_the_processor(monkeypatch, flags, expected, decoder):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == expected and chosen.reason.startswith("auto:")
    assert chosen.decoder_dtype == decoder


def test_auto_skips_int8_where_this_pytorch_has_no_quantised_engine(monkeypatch):
    # dtype="auto" must not pick a format that use_precision then refuses ("no quantised engine for int8")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_vnni", "avx512_bf16"})
    monkeypatch.setattr(precision, "int8_engine_available", lambda: False)
    assert choose_precision("auto", "cpu").name == "bf16"


@pytest.mark.parametrize(
    "capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 1), "fp16")]
)
def test_auto_on_a_gpu_takes_bf16_only_where_it_is_native(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() also says yes for a T4 or V100 (sm 7.x), which only emulate bf16: far slower
    # than their fp16. And the pipeline's device is asked, not the current one.
    asked = []
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    chosen = choose_precision("auto", "cuda:1")
    assert chosen.name == expected and chosen.reason.startswith("auto:")
    assert asked == [torch.device("cuda:1")]


@pytest.mark.parametrize(
    "requested, device, message",
    [("fp16", "cpu", "GPU format"), ("int8", "cuda", "CPUs only"), ("fp64", "cpu", "must be one of")],
)
def test_unsupported_requests_are_refused_with_the_alternative(requested, device, message):
    with pytest.raises(ValueError, match=message):
        choose_precision(requested, device)


def test_autocast_context_only_for_reduced_float_formats():
    with Precision("bf16").autocast("cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with Precision("int8").autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


@pytest.fixture(scope="module")
def fp32_tokens():
    return Pipeline.from_pretrained("bundled:fashion-mnist")(class_labels=[0, 7], seed=3, output_type="pt").tokens


def test_fp32_is_the_exact_default(fp32_tokens):
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype="fp32")
    assert pipe.precision.name == "fp32"
    assert torch.equal(pipe(class_labels=[0, 7], seed=3, output_type="pt").tokens, fp32_tokens)


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_fast_precisions_sample_valid_images(dtype, fp32_tokens):
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype=dtype)
    out = pipe(class_labels=[0, 7], seed=3, output_type="pt")
    assert out.images.shape == (2, 1, 32, 32) and torch.isfinite(out.images).all()
    assert torch.equal(out.tokens, pipe(class_labels=[0, 7], seed=3, output_type="pt").tokens)  # still seeded
    assert out.tokens[:, :1].eq(fp32_tokens[:, :1]).all()  # the 1x1 token: the same draw from near-equal logits
    if dtype == "int8":
        quantized = [
            name for name, module in pipe.transformer.named_modules() if "quantized.dynamic" in type(module).__module__
        ]
        assert {"blocks.0.ffn.fc1", "blocks.0.attn.qkv", "head"} <= set(quantized)


def test_text_pipeline_samples_in_bf16():
    pipe = Pipeline.from_pretrained("bundled:scenes", dtype="bf16")
    out = pipe(prompt="a bag in the top left", seed=0, output_type="pt")
    assert out.images.shape == (1, 1, 64, 64) and pipe.precision.name == "bf16"


def test_casting_linear_weights_once_equals_autocast_of_float32_weights():
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist")
    with Precision("bf16").autocast("cpu"):
        autocast_out = pipe.sampler.sample([0, 7], generator=torch.Generator().manual_seed(3))
    cast = Pipeline.from_pretrained("bundled:fashion-mnist", dtype="bf16")
    linear = cast.transformer.blocks[0].ffn.fc1
    assert linear.weight.dtype == torch.bfloat16 and cast.transformer.pos_embed.dtype == torch.float32
    with cast.precision.autocast("cpu"):
        cast_out = cast.sampler.sample([0, 7], generator=torch.Generator().manual_seed(3))
    assert torch.equal(cast_out.tokens, autocast_out.tokens)
    assert torch.allclose(cast_out.f_hat, autocast_out.f_hat, atol=1e-6)


def test_cast_weights_compute_what_autocast_computes_where_the_models_turn_autocast_off():
    # STAR's start vectors (pooled text projections) and the teacher-forced word embedding run with autocast off,
    # in float32 as the official code does: cast to bf16 they came out bf16-rounded (0.005 off on this model).
    torch.manual_seed(0)
    text_model = tiny_text_transformer(text_dim=8).eval()
    generator = torch.Generator().manual_seed(3)
    condition = TextCondition(
        hidden=torch.randn(2, 5, 8, generator=generator) * 3,
        pooled=torch.randn(2, 8, generator=generator) * 3,
        mask=torch.ones(2, 5, dtype=torch.long),
    )
    class_model = tiny_class_pipeline().transformer
    labels = torch.tensor([1, 2])
    teacher = torch.randn(2, class_model.schedule.total_tokens - 1, class_model.config.code_dim, generator=generator)
    with torch.no_grad(), Precision("bf16").autocast("cpu"):
        start, logits = text_model.condition_context(condition).start, class_model(labels, teacher)
        assert cast_linear_weights(text_model, torch.bfloat16) > 0 and cast_linear_weights(class_model, torch.bfloat16)
        assert torch.equal(text_model.condition_context(condition).start, start)
        assert torch.equal(class_model(labels, teacher), logits)
    assert text_model.blocks[0].ffn.fc1.weight.dtype == torch.bfloat16
    assert text_model.text_proj.weight.dtype == class_model.word_embed.weight.dtype == torch.float32


def test_fast_path_decodes_in_reduced_precision_and_returns_float32_images():
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype="bf16")
    assert pipe.tokenizer.channels_last_decoder
    out = pipe(class_labels=[2], seed=0, output_type="pt")
    assert out.images.dtype == torch.float32 and 0 <= out.images.min() and out.images.max() <= 1
    exact = Pipeline.from_pretrained("bundled:fashion-mnist")
    assert not exact.tokenizer.channels_last_decoder  # fp32 keeps the bit-exact NCHW decoder
    reference = exact.sampler.decode(exact.sampler.sample([2], generator=torch.Generator().manual_seed(0)).f_hat)
    assert (out.images - reference).abs().mean() < 0.05  # same picture (tokens may differ in a few draws)


def test_a_converted_pipeline_refuses_another_precision():
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype="bf16")
    assert pipe.use_precision("bf16") is pipe  # the same precision again is fine
    with pytest.raises(ValueError, match="already holds bf16 weights; load the folder again"):
        pipe.use_precision("fp32")
