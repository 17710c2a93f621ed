"""The next-scale loop's transformer steps replayed as CUDA graphs: one graph per scale, captured once.

At small batches a sampling call is bound by kernel launches, not by math: a d16 call runs 10 scales of 16
blocks of about 30 kernels each, every one launched from Python. Every scale's cached step has a static shape
(the KV cache is preallocated and each scale writes at a fixed offset), so each can be captured once as a
``torch.cuda.CUDAGraph`` and then replayed with one launch. What a graph reads and writes must stay at fixed
addresses, so :class:`CudaGraphSteps` keeps:

- **the condition** in static buffers: the tensors of the per-call context that a new condition changes (VAR:
  the (B, C) class condition; STAR: the start vectors, every block's text keys/values and the padding bias,
  see :func:`context_tensors`). ``begin`` computes the call's context eagerly (the label range check and the
  text padding check read values back, which a capture cannot) and copies those tensors into the buffers.
- **the derived context** inside scale 0's graph: the context is rebuilt from the buffers in that capture
  (:func:`context_from_tensors`; for VAR the shared AdaLN projection and an empty modulation memo). Every
  block fills its memo entry at scale 0, so graph 0 recomputes the modulations of the new condition at every
  replay, and the later scales' graphs read those same tensors (they stay alive in the kept context).
- **one input buffer per scale**: ``logits`` copies the sampler's (B, l, C) input into it and replays.
- **the KV cache**, kept as ``TransformerSteps`` keeps it. A replay runs no Python, so ``logits`` advances the
  cache's ``length`` pointer itself.
- **one (B, l, V) logits output per scale**, which ``logits`` returns. It is overwritten when that scale's
  graph replays again (the next call); the sampler consumes it before then.

The graphs share one memory pool, which is safe because they always replay in capture order, one at a time.
Captures take turns across threads (PyTorch supports one at a time in a process), and forbid the unsafe CUDA calls
(allocation, synchronisation) to the capturing thread only, so that other threads may go on using the GPU meanwhile.
A capture is keyed by everything it baked in: the condition tensors' shapes, strides and dtypes (rows, and the
text length T), the autocast state, train/eval mode, the fused-kernel switch (``use_fused_kernels``: its
compiled regions compile during the warm-up passes, before any capture), inference mode (the static memory of a
capture made under ``torch.inference_mode`` cannot be written outside it), and the address and dtype of every
parameter and buffer (``model.to(...)`` moves them; the graphs read them by address). When the key changes, the
graphs are captured anew and the old ones dropped. Text encoders that pad to the longest prompt change T, and so
re-capture, with the prompts' length.

Autocast: the capture runs under the autocast state active at the call that captures (bf16 on GPUs), with
autocast's weight-cast cache turned off: the cache is freed when the caller's autocast context exits, and a
graph would go on reading the freed casts (``torch.cuda.make_graphed_callables`` refuses the cache for the
same reason). With the bf16 precision of ``sampling/precision.py`` the linear weights are already bf16, so
nothing is re-cast per replay.

References:
    PyTorch notes, "CUDA Graphs" (https://pytorch.org/docs/stable/notes/cuda.html#cuda-graphs): warm-up on a
    side stream, static inputs and outputs, graphs sharing one pool replayed in capture order.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from nextscale.layers.cross_attention import ContextKeyValues
from nextscale.sampling.steps import TransformerSteps, cache_dtype, resolve_device
from nextscale.transformer.conditioning import Condition
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.model import ClassContext, ScaleTransformer
from nextscale.transformer.sequence import cached_scale
from nextscale.transformer.text_model import TextContext, TextScaleTransformer

# Eager passes over all scales before the capture: the first runs pick kernels and allocate workspaces (cuBLAS,
# attention), which must not happen while capturing.
WARMUP_CALLS = 2
# PyTorch supports one capture at a time in a process: pipelines sampled from several threads (a server's class and
# text models) take turns to capture; replays need no lock.
_CAPTURE_LOCK = threading.Lock()


def context_tensors(context: ClassContext | TextContext) -> list[torch.Tensor]:
    """The tensors of a per-call context that a new condition changes (what the static buffers hold).

    VAR: the (B, C) condition alone (its shared modulation and memo are rebuilt from it). STAR: the (B, C)
    start vectors, every block's (B, H, T, Dh) text keys and values, and the (B, 1, 1, T) padding bias.
    """
    if isinstance(context, ClassContext):
        return [context.cond]
    if isinstance(context, TextContext):
        text = [tensor for layer in context.text for tensor in (layer.keys, layer.values)]
        return [context.start, *text, context.text_bias]
    raise ValueError(
        f"CUDA graphs support the VAR (ClassContext) and STAR (TextContext) contexts, not {type(context).__name__}"
    )


def context_from_tensors(
    transformer: nn.Module, like: ClassContext | TextContext, tensors: list[torch.Tensor]
) -> ClassContext | TextContext:
    """A context of ``like``'s kind that reads ``tensors`` (laid out as :func:`context_tensors` gives them)
    without copying them; VAR's shared modulation and empty memo are computed here, from the condition."""
    if isinstance(like, ClassContext):
        (cond,) = tensors
        return ClassContext(cond=cond, block_condition=transformer.block_condition(cond).with_memo())
    start, *text, text_bias = tensors
    layers = [ContextKeyValues(keys, values) for keys, values in zip(text[0::2], text[1::2])]
    return TextContext(start=start, text=layers, text_bias=text_bias)


@dataclass
class CapturedSteps:
    """One capture: the static memory the graphs read and write, and the graphs (one per scale)."""

    key: tuple
    buffers: list[torch.Tensor]  # the condition, laid out as context_tensors gives it
    context: ClassContext | TextContext  # reads ``buffers``; built inside scale 0's graph
    kv_cache: KVCache
    inputs: list[torch.Tensor]  # per scale (B, l, C)
    graphs: list[torch.cuda.CUDAGraph]
    logits: list[torch.Tensor]  # per scale (B, l, V) float32


class CudaGraphSteps(TransformerSteps):
    """Transformer steps replayed as CUDA graphs (one per scale), captured at the first call for a shape.

    Args:
        transformer: a VAR (:class:`ScaleTransformer`) or STAR (:class:`TextScaleTransformer`) model on a GPU.

    ``num_captures`` counts the captures made so far (a new row count, T, dtype, autocast state or inference mode
    re-captures).
    """

    def __init__(self, transformer: nn.Module) -> None:
        if not isinstance(transformer, (ScaleTransformer, TextScaleTransformer)):
            raise ValueError(
                "CUDA graphs replay the next-scale steps of VAR (ScaleTransformer) and STAR (TextScaleTransformer) "
                f"models, not of {type(transformer).__name__}; sample it with the eager TransformerSteps"
            )
        super().__init__(transformer)
        self._captured: CapturedSteps | None = None
        self.num_captures = 0

    @torch.no_grad()
    def begin(self, rows: Condition, device: torch.device | str) -> tuple[ClassContext | TextContext, KVCache]:
        """Load this call's condition rows (CFG rows included) into the static context (capturing first when
        nothing fits them) and return it with the kept, reset KV cache."""
        device = resolve_device(device)  # "cuda" and "cuda:0" replay the same graphs
        if device.type != "cuda":
            raise ValueError(
                f"CUDA graphs need a CUDA device; the transformer is on {device}. Move it to a GPU "
                "(.to('cuda')), or sample without them (pipe.use_cuda_graphs(False), or ScaleSampler without "
                "cuda_graphs=True)"
            )
        context = self.transformer.condition_context(rows)
        tensors = context_tensors(context)
        key = self._capture_key(tensors, device)
        if self._captured is None or self._captured.key != key:
            self._captured = None  # free the old graphs, their pool and their cache before capturing anew
            with _CAPTURE_LOCK:
                self._captured = self._capture(key, context, device)
            self.num_captures += 1
        captured = self._captured
        for buffer, tensor in zip(captured.buffers, tensors):
            buffer.copy_(tensor)
        captured.kv_cache.reset()
        return captured.context, captured.kv_cache

    @torch.no_grad()
    def logits(self, x: torch.Tensor, context: object, kv_cache: KVCache) -> torch.Tensor:
        """Replay the graph of the scale at ``kv_cache.length`` on (B, l, C) inputs x.

        Returns:
            (B, l, V) float32 logits: a static tensor, overwritten when this scale's graph replays next.
        """
        captured = self._captured
        if captured is None or context is not captured.context or kv_cache is not captured.kv_cache:
            raise ValueError("pass the context and KV cache of the latest begin(): the CUDA graphs replay on those")
        scale_idx = cached_scale(self.transformer.schedule, kv_cache)
        static_x = captured.inputs[scale_idx]
        if x.shape != static_x.shape or x.dtype != static_x.dtype:
            raise ValueError(
                f"scale {scale_idx}'s CUDA graph takes inputs {tuple(static_x.shape)} {static_x.dtype}, got "
                f"{tuple(x.shape)} {x.dtype}; pass transformer.scale_input(...) for the rows given to begin()"
            )
        static_x.copy_(x)
        captured.graphs[scale_idx].replay()
        kv_cache.advance(x.shape[1])
        return captured.logits[scale_idx]

    @property
    def hidden(self):
        """Not here: the graphs replay logits only, and the static context lacks the masked-sampler head's start
        vectors. Raising AttributeError hides the eager steps' ``hidden``, so ``hasattr(steps, "hidden")`` is False
        and the sampler refuses masked sampling with CUDA graphs before it samples anything."""
        raise AttributeError("CUDA graph steps replay logits only; masked sampling runs eagerly (without CUDA graphs)")

    def release(self) -> None:
        """Drop the graphs, their memory pool and the KV cache (the next call captures again)."""
        super().release()
        self._captured = None

    def _capture_key(self, tensors: list[torch.Tensor], device: torch.device) -> tuple:
        """Everything a capture bakes in (see the module docstring)."""
        model = self.transformer
        return (
            device,
            torch.is_autocast_enabled(device.type),
            torch.get_autocast_dtype(device.type),
            model.training,
            model.fused_kernels,  # the graphs replay whichever kernels (fused or exact) the capture ran
            torch.is_inference_mode_enabled(),
            tuple((t.shape, t.stride(), t.dtype) for t in tensors),
            tuple((t.data_ptr(), t.dtype) for t in chain(model.parameters(), model.buffers())),
        )

    def _static_inputs(self, context: ClassContext | TextContext, device: torch.device) -> list[torch.Tensor]:
        """One zero (B, l, C) buffer per scale, shaped and typed like ``scale_input``'s output (as the sampler
        passes it)."""
        model = self.transformer
        rows, code_dim = len(context), model.config.code_dim
        latent_dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        inputs = []
        for scale_idx, count in enumerate(model.schedule.token_counts):
            latent = None if scale_idx == 0 else torch.zeros(rows, count, code_dim, device=device, dtype=latent_dtype)
            inputs.append(torch.zeros_like(model.scale_input(scale_idx, context, latent)))
        return inputs

    def _run_scales(self, context: ClassContext | TextContext, inputs: list[torch.Tensor], kv_cache: KVCache) -> None:
        kv_cache.reset()
        for x in inputs:
            self.transformer.forward_cached(x, context, kv_cache)

    def _capture(self, key: tuple, context: ClassContext | TextContext, device: torch.device) -> CapturedSteps:
        """Allocate the static memory, warm up on a side stream, then capture one graph per scale."""
        model = self.transformer
        tensors = context_tensors(context)
        # Same strides as the eager tensors, so that attention picks the same kernels as the eager steps.
        buffers = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device).copy_(t) for t in tensors]
        kv_cache = model.new_kv_cache(len(context), device=device, dtype=cache_dtype(model, device))
        inputs = self._static_inputs(context, device)
        autocast = torch.autocast(
            device.type,
            dtype=torch.get_autocast_dtype(device.type),
            enabled=torch.is_autocast_enabled(device.type),
            cache_enabled=False,  # a graph must not read casts that the caller's autocast exit frees
        )
        graphs, logits = [], []
        with torch.cuda.device(device), autocast:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self._run_scales(context_from_tensors(model, context, buffers), inputs, kv_cache)
            torch.cuda.current_stream(device).wait_stream(side)

            kv_cache.reset()
            pool = torch.cuda.graph_pool_handle()
            static_context = None
            for x in inputs:
                graph = torch.cuda.CUDAGraph()
                # On the model's device (torch's default capture stream belongs to the GPU current at the process's
                # first capture), forbidding unsafe CUDA calls to this thread only: another thread (a server's other
                # pipeline) may allocate and synchronise meanwhile, which the "global" default turns into a failed
                # capture here and an error there.
                with torch.cuda.graph(graph, pool=pool, stream=side, capture_error_mode="thread_local"):
                    if static_context is None:  # scale 0: the shared modulation and the memo become part of graph 0
                        static_context = context_from_tensors(model, context, buffers)
                    logits.append(model.forward_cached(x, static_context, kv_cache))
                graphs.append(graph)
        kv_cache.reset()  # capturing advanced the pointer without running anything
        return CapturedSteps(key, buffers, static_context, kv_cache, inputs, graphs, logits)
