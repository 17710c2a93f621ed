"""A pipeline's speed switches: what a call keeps (KV cache, CUDA graphs) is not dropped under a call running in
another thread, and CUDA graphs are refused off the GPU and can be switched off again."""

import threading

import pytest
import torch
from tiny_pipelines import tiny_class_pipeline

from nextscale.sampling.sampler import ScaleSampler
from nextscale.sampling.steps import TransformerSteps


def test_release_memory_waits_for_a_call_running_in_another_thread():
    # With CUDA graphs, dropping the graphs between two scales of a running call makes its next step fail ("pass the
    # context and KV cache of the latest begin()"); the eager steps' kept cache is the same bookkeeping on a CPU.
    pipe = tiny_class_pipeline()
    expected = pipe(class_labels=[1, 2], seed=0, output_type="pt").tokens
    steps = pipe.sampler.steps
    assert type(steps) is TransformerSteps
    paused, resume = threading.Event(), threading.Event()
    eager_logits = steps.logits

    def pausing_logits(x, context, kv_cache):
        if kv_cache.length > 0 and not paused.is_set():  # between the first and the second scale
            paused.set()
            assert resume.wait(timeout=60)
        return eager_logits(x, context, kv_cache)

    steps.logits = pausing_logits
    results = {}
    call = threading.Thread(target=lambda: results.update(tokens=pipe(class_labels=[1, 2], seed=0).tokens))
    call.start()
    assert paused.wait(timeout=60)
    release = threading.Thread(target=pipe.release_memory)
    release.start()
    release.join(timeout=0.5)
    released_mid_call = not release.is_alive()
    kept_mid_call = steps._kv_cache is not None
    resume.set()
    call.join(timeout=60)
    release.join(timeout=60)
    assert not released_mid_call and kept_mid_call  # release_memory waited for the call
    assert torch.equal(results["tokens"], expected)
    assert steps._kv_cache is None  # and then released


def test_cuda_graphs_are_refused_on_a_cpu_and_a_pipeline_moved_off_the_gpu_can_switch_them_off():
    pipe = tiny_class_pipeline()
    expected = pipe(class_labels=[1, 2], seed=0, output_type="pt").tokens
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device; this pipeline is on cpu"):
        pipe.use_cuda_graphs()
    assert type(pipe.sampler.steps) is TransformerSteps
    # What pipe.to("cpu") leaves after use_cuda_graphs() on a GPU: graphed steps on a CPU model.
    pipe.sampler = ScaleSampler(pipe.tokenizer, pipe.transformer, cuda_graphs=True)
    with pytest.raises(ValueError, match=r"pipe\.use_cuda_graphs\(False\)"):
        pipe(class_labels=[1, 2], seed=0)
    assert pipe.use_cuda_graphs(False) is pipe and type(pipe.sampler.steps) is TransformerSteps
    assert torch.equal(pipe(class_labels=[1, 2], seed=0, output_type="pt").tokens, expected)
