"""The Python API of a pipeline call as a researcher meets it: names, inputs of every kind, clear errors, no state
leaking between calls, and nothing global changed."""

import threading

import numpy as np
import pytest
import torch

import nextscale
from nextscale.presets import tiny
from nextscale.sampling.guidance import ScaleOverride
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config)
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # peaked logits: seeds and filters matter
    return Pipeline(MultiScaleVQVAE(tokenizer_config), transformer)


def sample(pipe, **kwargs):
    return pipe(**{"seed": 0, "output_type": "pt", **kwargs})


def test_public_names_are_listed_by_the_package():
    assert {"Pipeline", "TextPipeline", "RasterPipeline", "PipelineOutput", "EditOutput"} <= set(dir(nextscale))
    assert set(nextscale.__all__) <= set(dir(nextscale))
    assert nextscale.RasterPipeline.__name__ == "RasterPipeline"
    with pytest.raises(AttributeError, match="no attribute 'Pipelines'"):
        nextscale.Pipelines  # noqa: B018


def test_repr_says_what_the_pipeline_is(pipe):
    text = repr(pipe)
    assert text.startswith("Pipeline(") and "object at" not in text
    assert "device='cpu'" in text and "precision='fp32'" in text and "scale_sides=(1, 2, 4)" in text
    assert "num_classes=10" in text and "tokens=21" in text


def test_numpy_labels_work_like_python_ints(pipe):
    reference = sample(pipe, class_labels=[3])
    assert torch.equal(sample(pipe, class_labels=np.int64(3)).tokens, reference.tokens)
    assert sample(pipe, class_labels=np.array([3, 4])).class_labels.tolist() == [3, 4]
    assert sample(pipe, class_labels=torch.tensor(3)).class_labels.tolist() == [3]


@pytest.mark.parametrize(
    "labels", [torch.tensor([1.5]), torch.tensor([True]), np.array([2.7])], ids=["float", "bool", "np-float"]
)
def test_non_integer_label_arrays_are_refused_not_truncated(pipe, labels):
    with pytest.raises(TypeError, match="class.label"):
        sample(pipe, class_labels=labels)


def test_unordered_labels_are_refused(pipe):
    with pytest.raises(TypeError, match="ordered"):
        sample(pipe, class_labels={1, 2})


def test_generator_must_be_a_torch_generator(pipe):
    with pytest.raises(TypeError, match="torch.Generator"):
        pipe(class_labels=[1], generator=3)


def test_generator_on_another_device_is_refused_with_the_fix(pipe, monkeypatch):
    monkeypatch.setattr(Pipeline, "device", property(lambda self: torch.device("cuda")))
    with pytest.raises(ValueError, match=r"torch.Generator\(device=pipe.device\)"):
        pipe.make_generator(None, torch.Generator())


def test_generator_and_seed_give_the_same_images(pipe):
    by_seed = sample(pipe, class_labels=[1, 2], seed=7)
    by_generator = sample(pipe, class_labels=[1, 2], seed=None, generator=torch.Generator().manual_seed(7))
    assert torch.equal(by_seed.tokens, by_generator.tokens) and torch.equal(by_seed.images, by_generator.images)


@pytest.mark.parametrize("smooth", ["no", None, 0])
def test_smooth_must_be_a_bool(pipe, smooth):
    with pytest.raises(TypeError, match="smooth must be True or False"):
        sample(pipe, class_labels=[1], smooth=smooth)


def test_top_k_given_as_a_whole_float_filters_like_the_int(pipe):
    expected = sample(pipe, class_labels=[1, 2], top_k=2).tokens
    assert torch.equal(sample(pipe, class_labels=[1, 2], top_k=2.0).tokens, expected)
    assert torch.equal(sample(pipe, class_labels=[1, 2], top_k=np.float64(2)).tokens, expected)
    override = (ScaleOverride(scale_idx=2, top_k=1.0),)
    assert torch.equal(
        sample(pipe, class_labels=[1], overrides=override).tokens,
        sample(pipe, class_labels=[1], overrides=(ScaleOverride(scale_idx=2, top_k=1),)).tokens,
    )


def test_calls_inside_and_outside_inference_mode_share_a_pipeline(pipe):
    expected = sample(pipe, class_labels=[1, 2]).tokens
    pipe.release_memory()  # the next call makes the KV cache that later calls keep
    with torch.inference_mode():
        inside = sample(pipe, class_labels=[1, 2]).tokens
    after = sample(pipe, class_labels=[1, 2])  # the kept KV cache was made in inference mode
    assert torch.equal(inside, expected) and torch.equal(after.tokens, expected)
    assert not after.images.is_inference()
    with torch.inference_mode():
        assert torch.equal(sample(pipe, class_labels=[1, 2]).tokens, expected)


def test_calls_after_release_memory_give_the_same_images(pipe):
    expected = sample(pipe, class_labels=[4])
    pipe.release_memory()
    pipe.release_memory()
    again = sample(pipe, class_labels=[4])
    assert torch.equal(again.tokens, expected.tokens) and torch.equal(again.images, expected.images)


def test_a_call_leaves_torch_global_state_alone(pipe):
    threads, dtype, rng = torch.get_num_threads(), torch.get_default_dtype(), torch.get_rng_state()
    with torch.enable_grad():
        out = sample(pipe, class_labels=[1, 2], cfg=2.0, top_k=5, smooth=True)
        assert torch.is_grad_enabled() and not out.images.requires_grad
    assert torch.get_num_threads() == threads and torch.get_default_dtype() == dtype
    assert torch.equal(torch.get_rng_state(), rng)


def test_to_takes_devices_only(pipe):
    with pytest.raises(TypeError, match="use_precision"):
        pipe.to(torch.float16)
    with pytest.raises(ValueError, match="is not a torch device"):
        pipe.to("gpu")
    assert all(p.dtype == torch.float32 for p in pipe.transformer.parameters())
    assert pipe.to("cpu") is pipe


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(pipe):
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        pipe.to("cuda")
    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        Pipeline.from_pretrained("bundled:fashion-mnist", device="cuda")
    assert pipe.device.type == "cpu"


def test_output_types_have_the_documented_shapes(pipe):
    pt = sample(pipe, class_labels=[1, 2], num_images_per_prompt=2)
    np_images = sample(pipe, class_labels=[1, 2], num_images_per_prompt=2, output_type="np").images
    pil = sample(pipe, class_labels=[1, 2], num_images_per_prompt=2, output_type="pil").images
    assert pt.images.shape == (4, 3, 16, 16) and pt.images.dtype == torch.float32
    assert 0 <= pt.images.min() and pt.images.max() <= 1
    assert np_images.shape == (4, 16, 16, 3) and np_images.dtype == np.uint8
    assert len(pil) == 4 and pil[0].size == (16, 16) and pil[0].mode == "RGB"
    assert np.array_equal(np.stack([np.asarray(image) for image in pil]), np_images)
    assert pt.tokens.shape == (4, 21) and pt.tokens.dtype == torch.int64 and pt.class_labels.tolist() == [1, 1, 2, 2]


def test_decode_tokens_takes_arrays_and_checks_its_arguments(pipe):
    out = sample(pipe, class_labels=[1, 2])
    assert torch.equal(pipe.decode_tokens(out.tokens), out.images)
    assert torch.equal(pipe.decode_tokens(out.tokens.numpy()), out.images)
    assert torch.equal(pipe.decode_tokens(out.tokens.tolist()), out.images)
    with pytest.raises(ValueError, match="output_type"):
        pipe.decode_tokens(out.tokens, "PIL")
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        pipe.decode_tokens(out.tokens[0])


def test_overrides_must_name_an_existing_scale(pipe):
    with pytest.raises(TypeError, match="ScaleOverride objects"):
        sample(pipe, class_labels=[1], overrides=[{"scale_idx": 1, "top_k": 3}])
    with pytest.raises(ValueError, match=r"scale_idx must be in 0\.\.2, got 3"):
        sample(pipe, class_labels=[1], overrides=[ScaleOverride(scale_idx=3, top_k=1)])  # would be ignored
    with pytest.raises(TypeError, match="scale_idx must be an int"):
        sample(pipe, class_labels=[1], overrides=[ScaleOverride(scale_idx=1.5, top_k=1)])  # would match no step
    single = sample(pipe, class_labels=[1], overrides=ScaleOverride(scale_idx=2, top_k=1))
    assert torch.equal(single.tokens, sample(pipe, class_labels=[1], overrides=[ScaleOverride(2, top_k=1)]).tokens)


def test_calls_from_several_threads_take_turns(pipe):
    expected = {seed: sample(pipe, class_labels=[1, 2], seed=seed).tokens for seed in range(4)}
    results, errors = {}, []

    def call(seed):
        try:
            results[seed] = sample(pipe, class_labels=[1, 2], seed=seed).tokens
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=call, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(torch.equal(results[seed], expected[seed]) for seed in expected)


def test_a_deep_copy_is_an_independent_pipeline_with_its_own_locks_and_no_kept_state(pipe):
    import copy

    from tiny_pipelines import tiny_text_transformer

    from nextscale.sampling.text_pipeline import TextPipeline

    expected = sample(pipe, class_labels=[1, 2]).tokens  # the original now keeps a KV cache (and CPU memory)
    twin = copy.deepcopy(pipe)
    assert twin.call_lock is not pipe.call_lock and not twin.call_lock.locked()
    assert twin.memory_hold is not pipe.memory_hold and not twin.memory_hold.held
    assert twin.sampler.steps is not pipe.sampler.steps and twin.sampler.steps._kv_cache is None
    assert twin.sampler.transformer is twin.transformer and twin.sampler.steps.transformer is twin.transformer
    assert torch.equal(sample(twin, class_labels=[1, 2]).tokens, expected)
    with torch.no_grad():
        next(twin.transformer.parameters()).add_(1.0)  # the copy's weights are its own
    assert torch.equal(sample(pipe, class_labels=[1, 2]).tokens, expected)
    assert pipe.sampler.steps._kv_cache is not twin.sampler.steps._kv_cache
    text_pipe = TextPipeline(MultiScaleVQVAE(tiny()[0]), tiny_text_transformer())
    assert type(copy.deepcopy(text_pipe)) is TextPipeline


def test_labels_listed_from_a_tensor_or_array_work(pipe):
    expected = sample(pipe, class_labels=[1, 2])
    assert torch.equal(sample(pipe, class_labels=list(torch.tensor([1, 2]))).tokens, expected.tokens)
    assert torch.equal(sample(pipe, class_labels=[np.array(1), np.array(2)]).tokens, expected.tokens)
    with pytest.raises(TypeError, match="int id or a class name"):
        sample(pipe, class_labels=[torch.tensor(1.5)])
