"""Sampling precision: fp32 stays exact, bf16 / int8 run and are chosen by the processor, bad requests are refused."""

import pytest
import torch

from nextscale.sampling import precision
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.precision import Precision, choose_precision


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx512_bf16", "avx512_vnni"}, "bf16"), ({"amx_bf16"}, "bf16"), ({"avx_vnni"}, "int8"), ({"avx2"}, "fp32")],
)
def test_auto_follows_the_processor(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    chosen = choose_precision("auto", "cpu")
    assert chosen.name == expected and chosen.reason.startswith("auto:")


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
        assert "blocks.0.ffn.fc1" in quantized and "head" in quantized
        assert not any(name.endswith("attn.qkv") for name in quantized)  # read as raw weights: stays float32


def test_text_pipeline_samples_in_bf16():
    pipe = Pipeline.from_pretrained("bundled:scenes", dtype="bf16")
    out = pipe(prompt="a bag in the top left", seed=0, output_type="pt")
    assert out.images.shape == (1, 1, 64, 64) and pipe.precision.name == "bf16"
