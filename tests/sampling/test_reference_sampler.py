"""The benchmarks' reference path (the official sampler's steps) and the exact path draw the same tokens and
images; the exact path evaluates each block's AdaLN projection once per call, the reference once per scale."""

import sys
from pathlib import Path

import pytest
import torch

from nextscale.presets import tiny
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from reference_sampler import reference_sample  # noqa: E402


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config)
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # non-trivial logits
    return Pipeline(MultiScaleVQVAE(tokenizer_config), transformer)


def count_adaln_calls(transformer):
    calls = []
    handles = [block.adaln.register_forward_hook(lambda *_: calls.append(1)) for block in transformer.blocks]
    return calls, handles


@pytest.mark.parametrize("labels", [[3], [0, 5, 9]])
def test_reference_and_exact_paths_draw_identical_tokens_and_images(pipe, labels):
    config = SamplingConfig(cfg=1.5, top_k=50, top_p=0.96)
    ref_tokens, ref_images = reference_sample(
        pipe.tokenizer, pipe.transformer, labels, config, torch.Generator().manual_seed(7)
    )
    out = pipe(class_labels=labels, cfg=1.5, top_k=50, top_p=0.96, seed=7, output_type="pt")
    assert torch.equal(out.tokens, ref_tokens)
    assert torch.equal(out.images, ref_images)


def test_adaln_runs_once_per_call_on_the_exact_path_and_once_per_scale_on_the_reference(pipe):
    transformer, num_scales = pipe.transformer, pipe.transformer.schedule.num_scales
    calls, handles = count_adaln_calls(transformer)
    try:
        pipe(class_labels=[1, 2], seed=0, output_type="pt")
        assert len(calls) == transformer.config.depth
        calls.clear()
        reference_sample(pipe.tokenizer, transformer, [1, 2], SamplingConfig(), torch.Generator().manual_seed(0))
        assert len(calls) == transformer.config.depth * num_scales
    finally:
        for handle in handles:
            handle.remove()


def test_kv_cache_is_kept_and_reused_across_calls(pipe):
    pipe(class_labels=[1], seed=0, output_type="pt")
    cache = pipe.sampler.steps._kv_cache
    first = pipe(class_labels=[4], seed=1, output_type="pt")
    assert pipe.sampler.steps._kv_cache is cache  # same rows: the buffers are reused
    pipe(class_labels=[1, 2], seed=0, output_type="pt")
    assert pipe.sampler.steps._kv_cache is not cache and pipe.sampler.steps._kv_cache.batch_size == 4
    again = pipe(class_labels=[4], seed=1, output_type="pt")  # stale contents of a reused cache never leak
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.images, again.images)


def test_freed_memory_is_kept_between_calls_until_released(pipe):
    from nextscale.sampling import cpu_memory

    pipe(class_labels=[1], seed=0, output_type="pt")
    assert pipe.memory_hold.held == cpu_memory.supported()  # glibc: kept after the call returned
    pipe.release_memory()
    assert not pipe.memory_hold.held and pipe.sampler.steps._kv_cache is None
    assert cpu_memory._depth == 0  # glibc's defaults are back
    again = pipe(class_labels=[1], seed=0, output_type="pt")  # and the next call takes them again
    assert pipe.memory_hold.held == cpu_memory.supported()
    assert again.tokens.shape[0] == 1
