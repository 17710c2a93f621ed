"""Preallocated key/value cache for scale-by-scale inference.

At inference the transformer runs one scale at a time: the new scale's tokens attend to every token of
the earlier scales plus their own scale, which is exactly what the block-causal training mask allows
(so no mask is needed). Keys and values of each layer are written into fixed buffers at
``[length, length + l)`` and attention reads ``[0, length + l)``. Buffers never move or grow, so a
sampler can capture each scale's step as a static graph.

References:
    nanochat ``engine.py`` (``KVCache`` passed into the model); VAR ``models/basic_var.py`` (concatenating cache).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer key/value buffers (num_layers, B, H, max_length, Dh) with a shared ``length`` pointer.

    Every layer writes at the same offset during one forward pass; the model calls :meth:`advance`
    once all layers are done with that pass.

    Args:
        num_layers: transformer depth.
        batch_size: B (with classifier-free guidance, the doubled batch).
        num_heads: H.
        max_length: total tokens over all scales (L).
        head_dim: Dh.
        device, dtype: buffer placement; dtype should be the dtype keys are produced in (the model's, or
            the autocast dtype). Under autocast, stored keys are cast to it on write.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_heads: int,
        max_length: int,
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if min(num_layers, batch_size, num_heads, max_length, head_dim) < 1:
            raise ValueError("every KV cache dimension must be >= 1")
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        # Uninitialised: ``update`` writes every slot before ``[0, length + l)`` is returned for reading.
        self.keys = torch.empty(shape, device=device, dtype=dtype)
        self.values = torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys/values at ``[length, length + l)`` and return ``[0, length + l)``.

        Args:
            layer_idx: which layer's buffers.
            key, value: (B, H, l, Dh).

        Returns:
            keys, values: (B, H, length + l, Dh) views into the buffers.
        """
        expected = (self.batch_size, self.keys.shape[2], key.shape[2], self.keys.shape[4])
        if tuple(key.shape) != expected or tuple(value.shape) != expected:
            raise ValueError(
                f"KV cache holds (B, H, *, Dh) = {expected[0], expected[1], expected[3]}, got keys "
                f"{tuple(key.shape)} and values {tuple(value.shape)}; build it with model.new_kv_cache(batch_size)"
            )
        end = self.length + key.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache overflow: {end} tokens > max_length {self.max_length}; call reset() first")
        if key.dtype != self.keys.dtype and not torch.is_autocast_enabled(key.device.type):
            raise ValueError(
                f"KV cache dtype {self.keys.dtype} differs from the attention dtype {key.dtype}; "
                f"create it with new_kv_cache(..., dtype={key.dtype})"
            )
        self.keys[layer_idx, :, :, self.length : end] = key
        self.values[layer_idx, :, :, self.length : end] = value
        return self.keys[layer_idx, :, :, :end], self.values[layer_idx, :, :, :end]

    def advance(self, num_tokens: int) -> None:
        """Move the pointer past the ``num_tokens`` just written by every layer."""
        if num_tokens < 0 or self.length + num_tokens > self.max_length:
            raise ValueError(f"cannot advance a cache at {self.length}/{self.max_length} by {num_tokens} tokens")
        self.length += num_tokens

    def reset(self) -> None:
        """Start a new sequence; old contents are overwritten before they are read again."""
        self.length = 0
