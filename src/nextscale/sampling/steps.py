"""How a sampling loop runs its transformer: the per-call context, the KV cache, and one cached forward.

Both loops (next-scale and raster) ask a :class:`TransformerSteps` for these three things instead of calling
the model directly, so that the way the model runs can change without touching the loops:

- ``TransformerSteps`` runs eagerly and keeps **one KV cache that later calls reuse** when the (batch, dtype,
  device) match: a d16 cache at B = 8 with CFG is 0.7 GB, and allocating and zero-filling it anew on every
  call cost 0.04 s at B = 1 (more at larger batches, and on GPUs an allocation per call). The buffers are
  allocated uninitialised: a cached forward writes positions ``[length, length + l)`` before any query reads
  them, so nothing ever reads an unwritten slot. The cache is created in the compute dtype (the autocast
  dtype while autocast is on), so reduced precision does not re-cast the whole cache at every layer.
- ``nextscale.sampling.cuda_graphs`` replays the same steps as captured CUDA graphs on a GPU.

The per-call context (the class or text condition as the model needs it at every scale, and the AdaLN
modulations memoised at the first scale) comes from ``transformer.condition_context``.
"""

from __future__ import annotations

import torch
from torch import nn

from nextscale.transformer.conditioning import Condition
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.sequence import compute_dtype


def resolve_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device with the index its tensors get: a bare "cuda" is the current GPU (where torch
    allocates), so that "cuda" and "cuda:0" find the same kept KV cache (and CUDA graphs) instead of new ones."""
    device = torch.device(device)
    if device.index is None and device.type != "cpu":
        return torch.empty(0, device=device).device  # an empty tensor allocates no memory
    return device


def cache_dtype(transformer: nn.Module, device: torch.device) -> torch.dtype:
    """The dtype keys and values come out in: the autocast dtype when autocast is on, else the model's."""
    return compute_dtype(device, next(p for p in transformer.parameters() if p.is_floating_point()).dtype)


class TransformerSteps:
    """Eager transformer steps with a KV cache reused across calls.

    Args:
        transformer: a model with ``condition_context``, ``new_kv_cache`` and ``forward_cached`` (VAR, STAR or
            the raster baseline).
    """

    def __init__(self, transformer: nn.Module) -> None:
        self.transformer = transformer
        self._kv_cache: KVCache | None = None

    def begin(self, rows: Condition, device: torch.device | str) -> tuple[object, KVCache]:
        """The context of this call's condition rows (CFG rows included) and an empty KV cache for them."""
        context = self.transformer.condition_context(rows)
        return context, self.kv_cache(len(rows), device)

    def kv_cache(self, batch_size: int, device: torch.device | str) -> KVCache:
        """The kept cache, reset, when it fits ``batch_size`` rows in this call's compute dtype; else a new one
        (which is then kept instead)."""
        device = resolve_device(device)
        dtype = cache_dtype(self.transformer, device)
        cache = self._kv_cache
        # A cache made under torch.inference_mode cannot be written outside it (and one made outside would hand
        # an inference-mode caller tensors that track versions): a switch of the mode takes a new one.
        if (
            cache is None
            or cache.batch_size != batch_size
            or cache.keys.dtype != dtype
            or cache.keys.device != device
            or cache.keys.is_inference() != torch.is_inference_mode_enabled()
        ):
            self._kv_cache = None  # free the old buffers before allocating the new ones
            cache = self._kv_cache = self.transformer.new_kv_cache(batch_size, device=device, dtype=dtype)
        cache.reset()
        return cache

    def release(self) -> None:
        """Drop the kept KV cache (its memory returns at the next allocation or garbage collection)."""
        self._kv_cache = None

    def logits(self, x: torch.Tensor, context: object, kv_cache: KVCache) -> torch.Tensor:
        """One cached forward: (B, l, C) inputs of the step at ``kv_cache.length`` -> (B, l, V) float32 logits."""
        return self.transformer.forward_cached(x, context, kv_cache)

    def hidden(self, x: torch.Tensor, context: object, kv_cache: KVCache) -> torch.Tensor:
        """The same forward without the head: (B, l, C) final hidden states (STAR's masked sampling)."""
        return self.transformer.hidden_cached(x, context, kv_cache)
