"""CUDA-graph transformer steps: clear errors off the GPU, a static context that is the eager one rebuilt from
copied buffers, and (on a GPU) the eager steps' tokens for the same seed."""

import dataclasses
import threading

import pytest
import torch

from nextscale.presets import star_tiny, tiny
from nextscale.sampling.cuda_graphs import CudaGraphSteps, context_from_tensors, context_tensors
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.sampling.steps import TransformerSteps
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import ClassCondition, TextCondition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_model import TextScaleTransformer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CONFIG = SamplingConfig(cfg=1.5, top_k=20, top_p=0.9)


def var_models(shared_adaln: bool = False) -> tuple[MultiScaleVQVAE, ScaleTransformer]:
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer_config = dataclasses.replace(transformer_config, shared_adaln=shared_adaln)  # VAR d36's variant
    transformer = ScaleTransformer(transformer_config).eval()
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)  # non-trivial logits
    return MultiScaleVQVAE(tokenizer_config).eval(), transformer


def star_models() -> tuple[MultiScaleVQVAE, TextScaleTransformer]:
    torch.manual_seed(0)
    tokenizer_config, transformer_config = star_tiny()
    transformer = TextScaleTransformer(transformer_config).eval()
    transformer.init_weights(init_head=1.0)
    return MultiScaleVQVAE(tokenizer_config).eval(), transformer


def prompts(batch: int, length: int = 5, seed: int = 1) -> TextCondition:
    """Random text features of ``batch`` prompts (the last padded by one token) and a one-row null."""
    generator = torch.Generator().manual_seed(seed)
    width = star_tiny()[1].text_dim
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, -1] = 0
    null = TextCondition(
        torch.randn(1, 2, width, generator=generator),
        torch.ones(1, 2, dtype=torch.long),
        torch.randn(1, width, generator=generator),
    )
    hidden = torch.randn(batch, length, width, generator=generator)
    pooled = torch.randn(batch, width, generator=generator)
    return TextCondition(hidden, mask, pooled, null)


def all_logits(transformer, context, kv_cache) -> list[torch.Tensor]:
    """Every scale's logits for zero latents (the context is what differs between the compared runs)."""
    schedule, rows, code_dim = transformer.schedule, len(context), transformer.config.code_dim
    kv_cache.reset()
    logits = []
    for scale_idx, count in enumerate(schedule.token_counts):
        latent = None if scale_idx == 0 else torch.zeros(rows, count, code_dim)
        logits.append(
            transformer.forward_cached(transformer.scale_input(scale_idx, context, latent), context, kv_cache)
        )
    return logits


# ---------------------------------------------------------------------------------------------------- CPU


def test_the_sampler_flag_chooses_the_steps_and_a_cpu_model_gets_a_clear_error():
    tokenizer, transformer = var_models()
    assert type(ScaleSampler(tokenizer, transformer).steps) is TransformerSteps
    sampler = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    assert isinstance(sampler.steps, CudaGraphSteps)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        sampler.sample([1, 2], config=CONFIG, generator=torch.Generator().manual_seed(0))


def test_the_raster_model_is_refused_with_its_name():
    raster = RasterTransformer(
        RasterConfig.from_depth(2, embed_dim=32, num_heads=2, num_classes=3, vocab_size=16, side=4)
    )
    with pytest.raises(ValueError, match="not of RasterTransformer"):
        CudaGraphSteps(raster)


@pytest.mark.parametrize("model", ["var", "var-shared-adaln", "star"])
@torch.no_grad()
def test_a_context_rebuilt_from_copied_buffers_reads_them_and_gives_the_eager_logits(model):
    """What the graphs rely on: the static context reads the buffers themselves (a new condition copied into
    them reaches the model) and computes exactly what the eager context computes."""
    if model == "star":
        transformer = star_models()[1]
        first, second = prompts(2, seed=1).with_unconditional(), prompts(2, seed=2).with_unconditional()
    else:
        transformer = var_models(shared_adaln=model == "var-shared-adaln")[1]
        first, second = (
            ClassCondition(torch.tensor(labels), transformer.config.null_class_id).with_unconditional()
            for labels in ([1, 2], [7, 3])
        )
    eager_first, eager_second = transformer.condition_context(first), transformer.condition_context(second)
    buffers = [tensor.clone() for tensor in context_tensors(eager_first)]
    rebuilt = context_from_tensors(transformer, eager_first, buffers)
    assert all(a is b for a, b in zip(context_tensors(rebuilt), buffers))

    kv_cache = transformer.new_kv_cache(len(first))
    for static, eager in zip(
        all_logits(transformer, rebuilt, kv_cache), all_logits(transformer, eager_first, kv_cache)
    ):
        assert torch.equal(static, eager)
    for buffer, tensor in zip(buffers, context_tensors(eager_second)):
        buffer.copy_(tensor)
    rebuilt = context_from_tensors(transformer, eager_second, buffers)  # graph 0 rebuilds it at every replay
    for static, eager in zip(
        all_logits(transformer, rebuilt, kv_cache), all_logits(transformer, eager_second, kv_cache)
    ):
        assert torch.equal(static, eager)


def test_the_kept_cache_is_found_by_a_device_name_too():
    # A device given by name ("cpu"; on a GPU "cuda" for "cuda:0") finds the kept cache instead of failing or
    # allocating a new one at every call.
    transformer = var_models()[1]
    steps = TransformerSteps(transformer)
    rows = ClassCondition(torch.tensor([1, 2]), transformer.config.null_class_id)
    with torch.no_grad():
        _, kv_cache = steps.begin(rows, "cpu")
    assert kv_cache.keys.device == torch.device("cpu")
    assert steps.kv_cache(2, torch.device("cpu")) is kv_cache and steps.kv_cache(2, "cpu") is kv_cache


# ---------------------------------------------------------------------------------------------------- GPU


def sample_both(tokenizer, transformer, condition, seed: int = 0, config: SamplingConfig = CONFIG, graphed=None):
    """Tokens of the eager and the graphed sampler (a kept graphed sampler may be passed) for one seed."""
    eager = ScaleSampler(tokenizer, transformer)
    graphed = graphed or ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    results = [
        sampler.sample(condition, config=config, generator=torch.Generator("cuda").manual_seed(seed))
        for sampler in (eager, graphed)
    ]
    return results[0].tokens, results[1].tokens


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("shared_adaln", [False, True])
def test_graphed_tokens_equal_eager_tokens_in_fp32_for_consecutive_conditions(shared_adaln):
    tokenizer, transformer = (m.cuda() for m in var_models(shared_adaln))
    graphed = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    first = sample_both(tokenizer, transformer, [1, 2, 3], graphed=graphed)
    second = sample_both(tokenizer, transformer, [7, 7, 0], graphed=graphed)
    assert torch.equal(*first) and torch.equal(*second)
    assert not torch.equal(first[1], second[1])  # the new labels reached the replayed graphs
    assert graphed.steps.num_captures == 1
    same_again = sample_both(tokenizer, transformer, [1, 2, 3], graphed=graphed)
    assert torch.equal(same_again[1], first[1])


@pytest.mark.gpu
@needs_cuda
def test_a_new_batch_size_captures_again_and_still_matches():
    tokenizer, transformer = (m.cuda() for m in var_models())
    graphed = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    for labels, captures in (([1, 2], 1), ([4, 5, 6], 2), ([8, 9], 3), ([3, 1], 3)):
        eager_tokens, graphed_tokens = sample_both(tokenizer, transformer, labels, graphed=graphed)
        assert torch.equal(eager_tokens, graphed_tokens) and graphed.steps.num_captures == captures
    # No guidance: B rows instead of 2B, another capture.
    eager_tokens, graphed_tokens = sample_both(
        tokenizer, transformer, [3, 1], config=SamplingConfig(cfg=0.0), graphed=graphed
    )
    assert torch.equal(eager_tokens, graphed_tokens) and graphed.steps.num_captures == 4


@pytest.mark.gpu
@needs_cuda
def test_bf16_autocast_replays_give_valid_deterministic_tokens_and_fp32_captures_again():
    tokenizer, transformer = (m.cuda() for m in var_models())
    graphed = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    runs = []
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            result = graphed.sample([1, 2], config=CONFIG, generator=torch.Generator("cuda").manual_seed(0))
        runs.append(result.tokens)
    assert runs[0].shape == (2, transformer.schedule.total_tokens)
    assert runs[0].min() >= 0 and runs[0].max() < transformer.config.vocab_size
    assert torch.equal(runs[0], runs[1]) and graphed.steps.num_captures == 1
    eager_tokens, graphed_tokens = sample_both(tokenizer, transformer, [1, 2], graphed=graphed)
    assert torch.equal(eager_tokens, graphed_tokens) and graphed.steps.num_captures == 2


@pytest.mark.gpu
@needs_cuda
def test_text_model_graphed_tokens_equal_eager_tokens_and_a_new_text_length_captures_again():
    tokenizer, transformer = (m.cuda() for m in star_models())
    graphed = ScaleSampler(tokenizer, transformer, cuda_graphs=True)
    config = SamplingConfig(cfg=2.0, top_k=20)
    first = sample_both(tokenizer, transformer, prompts(2, seed=1), config=config, graphed=graphed)
    second = sample_both(tokenizer, transformer, prompts(2, seed=2), config=config, graphed=graphed)
    assert torch.equal(*first) and torch.equal(*second) and not torch.equal(first[1], second[1])
    assert graphed.steps.num_captures == 1
    longer = sample_both(tokenizer, transformer, prompts(2, length=7, seed=3), config=config, graphed=graphed)
    assert torch.equal(*longer) and graphed.steps.num_captures == 2


@pytest.mark.gpu
@needs_cuda
def test_cuda_and_its_indexed_name_share_the_kept_cache_and_the_graphs():
    transformer = var_models()[1].cuda()
    indexed = torch.device("cuda", torch.cuda.current_device())
    steps = TransformerSteps(transformer)
    kv_cache = steps.kv_cache(2, "cuda")
    assert steps.kv_cache(2, indexed) is kv_cache
    graphed = CudaGraphSteps(transformer)
    rows = ClassCondition(torch.tensor([1, 2], device=indexed), transformer.config.null_class_id)
    context, kv_cache = graphed.begin(rows, "cuda")
    again_context, again_kv_cache = graphed.begin(rows, indexed)
    assert again_context is context and again_kv_cache is kv_cache and graphed.num_captures == 1


@pytest.mark.gpu
@needs_cuda
def test_another_thread_may_allocate_on_the_gpu_while_the_graphs_capture():
    # A server samples its class and text pipelines from two threads: one pipeline capturing must not make the
    # other's allocations fail (nor have them invalidate the capture).
    tokenizer, transformer = (m.cuda() for m in var_models())
    allocated, errors = [], []

    def allocate():
        try:
            allocated.append(torch.ones(8 << 20, device="cuda"))  # 32 MiB: a fresh cudaMalloc after the capture's
        except RuntimeError as error:  # empty_cache
            errors.append(error)

    def during_capture(module, args):
        if torch.cuda.is_current_stream_capturing() and not allocated and not errors:
            other = threading.Thread(target=allocate)
            other.start()
            other.join()

    hook = transformer.blocks[0].register_forward_pre_hook(during_capture)
    try:
        eager_tokens, graphed_tokens = sample_both(tokenizer, transformer, [1, 2])
    finally:
        hook.remove()
    assert not errors and len(allocated) == 1 and allocated[0].sum().item() == 8 << 20
    assert torch.equal(eager_tokens, graphed_tokens)


@pytest.mark.gpu
@needs_cuda
def test_pipelines_sampled_from_two_threads_take_turns_to_capture():
    # PyTorch supports one capture at a time in a process: a second graphed model's first call, made while the first
    # one captures, waits for that capture to end before its own.
    tokenizer, first = (m.cuda() for m in var_models())
    second = var_models(shared_adaln=True)[1].cuda()
    samplers = [ScaleSampler(tokenizer, model, cuda_graphs=True) for model in (first, second)]
    underway, overlapped, results, threads = threading.Event(), [], {}, []
    first_capture, second_capture = samplers[0].steps._capture, samplers[1].steps._capture

    def tracked_capture(*args):
        underway.set()
        try:
            return first_capture(*args)
        finally:
            underway.clear()

    def recorded_capture(*args):
        overlapped.append(underway.is_set())
        return second_capture(*args)

    samplers[0].steps._capture, samplers[1].steps._capture = tracked_capture, recorded_capture

    def sample(index):
        generator = torch.Generator("cuda").manual_seed(0)
        results[index] = samplers[index].sample([1, 2], config=CONFIG, generator=generator).tokens

    def start_second_call(module, args):
        if torch.cuda.is_current_stream_capturing() and not threads:
            threads.append(threading.Thread(target=sample, args=(1,)))
            threads[0].start()
            threads[0].join(timeout=2)  # the second call runs up to its capture meanwhile

    hook = first.blocks[0].register_forward_pre_hook(start_second_call)
    try:
        sample(0)
    finally:
        hook.remove()
    threads[0].join(timeout=60)
    assert overlapped == [False]
    for index, model in enumerate((first, second)):
        eager = ScaleSampler(tokenizer, model).sample(
            [1, 2], config=CONFIG, generator=torch.Generator("cuda").manual_seed(0)
        )
        assert torch.equal(results[index], eager.tokens)
