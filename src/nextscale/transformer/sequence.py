"""Checks and caches shared by the VAR, STAR and raster transformers: the teacher-forcing prefix, the compute
dtype, the scale at a cache position, and the inference KV cache of a model's shape."""

from __future__ import annotations

import torch

from nextscale.scales import ScaleSchedule
from nextscale.transformer.kv_cache import KVCache


def teacher_prefix(schedule: ScaleSchedule, teacher_input: torch.Tensor, code_dim: int, batch_size: int) -> int:
    """Validate a (B, L' - 1, code_dim) teacher-forcing input; return L', the number of positions it produces."""
    if teacher_input.ndim != 3 or teacher_input.shape[2] != code_dim:
        raise ValueError(f"teacher_input must be (B, L - 1, code_dim={code_dim}), got {tuple(teacher_input.shape)}")
    if teacher_input.shape[0] != batch_size:
        raise ValueError(f"{batch_size} conditions for a teacher_input batch of {teacher_input.shape[0]}")
    prefix = teacher_input.shape[1] + 1
    valid = schedule.offsets[1:]
    if prefix not in valid:
        raise ValueError(
            f"teacher_input has {teacher_input.shape[1]} positions; expected one less than a scale "
            f"boundary {valid} (all scales: {schedule.total_tokens - 1})"
        )
    return prefix


def compute_dtype(device: torch.device, default: torch.dtype) -> torch.dtype:
    """The dtype the blocks compute in (and keys/values come out in): the autocast dtype when autocast is on for
    ``device``, else ``default``."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return default


def cached_scale(schedule: ScaleSchedule, kv_cache: KVCache) -> int:
    """The scale whose tokens start at the cache's current length (the next one a cached forward runs)."""
    offsets = schedule.offsets
    if kv_cache.length not in offsets[:-1]:
        raise ValueError(f"kv_cache.length {kv_cache.length} is not a scale start {offsets[:-1]}")
    return offsets.index(kv_cache.length)


def new_kv_cache(config, batch_size: int, device: torch.device | str, dtype: torch.dtype) -> KVCache:
    """An empty cache for ``batch_size`` sequences of a transformer config (depth, heads, head dim, schedule)."""
    return KVCache(
        num_layers=config.depth,
        batch_size=batch_size,
        num_heads=config.num_heads,
        max_length=config.schedule.total_tokens,
        head_dim=config.head_dim,
        device=device,
        dtype=dtype,
    )
