"""The speed paths' bookkeeping: what makes the CUDA graphs capture again (inference mode, like the eager steps'
kept KV cache), what they refuse (masked sampling), and what the kept KV cache does across calls."""

import dataclasses

import pytest
import torch
from tiny_pipelines import tiny_text_transformer

from nextscale.presets import tiny
from nextscale.sampling.cuda_graphs import CudaGraphSteps, context_tensors
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import ClassCondition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_model import TextScaleTransformer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def var_models() -> tuple[MultiScaleVQVAE, ScaleTransformer]:
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config).eval()
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)
    return MultiScaleVQVAE(tokenizer_config).eval(), transformer


def test_a_switch_of_inference_mode_captures_the_graphs_again():
    # A capture under torch.inference_mode makes its buffers inference tensors, which a later call outside it
    # could not copy the new condition into ("Inplace update to inference tensor outside InferenceMode").
    transformer = var_models()[1]
    steps = CudaGraphSteps(transformer)
    condition = ClassCondition(torch.tensor([1, 2]), transformer.config.null_class_id)
    with torch.no_grad():
        tensors = context_tensors(transformer.condition_context(condition))
        outside = steps._capture_key(tensors, torch.device("cpu"))
    with torch.inference_mode():
        inside = steps._capture_key(tensors, torch.device("cpu"))
    assert outside != inside


@pytest.mark.gpu
@needs_cuda
def test_graphs_captured_in_inference_mode_replay_outside_it():
    tokenizer, transformer = (m.cuda() for m in var_models())
    graphed = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    config = SamplingConfig(cfg=1.5, top_k=20)
    with torch.inference_mode():
        inside = graphed.sample([1, 2], config=config, generator=torch.Generator("cuda").manual_seed(0)).tokens
    outside = graphed.sample([1, 2], config=config, generator=torch.Generator("cuda").manual_seed(0)).tokens
    assert torch.equal(inside, outside) and graphed.steps.num_captures == 2


def test_the_kept_kv_cache_never_leaks_between_calls_of_other_rows_or_guidance():
    tokenizer, transformer = var_models()
    kept = ScaleSampler(tokenizer, transformer)

    def tokens(sampler, labels, cfg):
        config = SamplingConfig(cfg=cfg, top_k=20)
        return sampler.sample(labels, config=config, generator=torch.Generator().manual_seed(5)).tokens

    calls = [([1, 2, 3], 1.5), ([4], 0.0), ([4], 1.5), ([1, 2, 3], 0.0), ([1, 2, 3], 1.5)]
    for labels, cfg in calls:
        fresh = ScaleSampler(tokenizer, transformer)  # its own new cache
        assert torch.equal(tokens(kept, labels, cfg), tokens(fresh, labels, cfg))


def test_a_call_that_fails_midway_leaves_a_cache_the_next_call_resets():
    tokenizer, transformer = var_models()
    sampler = ScaleSampler(tokenizer, transformer)
    expected = sampler.sample([3, 4], generator=torch.Generator().manual_seed(1)).tokens

    def failing(scale_idx, tokens_Bl, codes_BlC):
        if scale_idx == 1:
            raise RuntimeError("stop")
        return tokens_Bl, codes_BlC

    with pytest.raises(RuntimeError, match="stop"):
        sampler.sample([3, 4], generator=torch.Generator().manual_seed(1), constraint=failing)
    assert sampler.steps._kv_cache.length > 0  # half written
    again = sampler.sample([3, 4], generator=torch.Generator().manual_seed(1)).tokens
    assert torch.equal(again, expected)


def test_an_odd_schedule_samples_the_same_with_the_kept_cache():
    tokenizer_config, transformer_config = tiny()
    sides = (1, 3, 5)
    torch.manual_seed(0)
    transformer = ScaleTransformer(dataclasses.replace(transformer_config, scale_sides=sides)).eval()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, scale_sides=sides)).eval()
    sampler = ScaleSampler(tokenizer, transformer)
    first = sampler.sample([0], generator=torch.Generator().manual_seed(2)).tokens
    sampler.sample([1, 2, 3], generator=torch.Generator().manual_seed(2))
    assert torch.equal(sampler.sample([0], generator=torch.Generator().manual_seed(2)).tokens, first)


def test_masked_sampling_with_cuda_graphs_is_refused_before_sampling():
    # The graphs' static context has no masked-sampler start vectors: without the refusal, a call would sample the
    # first scales and then fail deep in the head on None.
    plain = tiny_text_transformer(text_dim=8)
    model = TextScaleTransformer(dataclasses.replace(plain.config, sampler_head=True, sampler_from_scale=2)).eval()
    sampler = ScaleSampler(MultiScaleVQVAE(tiny()[0]), model, cuda_graphs=True)
    assert not hasattr(sampler.steps, "hidden")
    with pytest.raises(ValueError, match="masked sampling runs eagerly; sample without CUDA graphs"):
        sampler.masked_sampling_start(SamplingConfig(masked_sampling=True))
    assert ScaleSampler(MultiScaleVQVAE(tiny()[0]), model).masked_sampling_start(SamplingConfig(masked_sampling=True))
