"""A run's numeric precision: what "auto" resolves to, the autocast and GradScaler it needs, and the check that
stops a run whose loss or gradients are no longer finite (under fp16 an infinite gradient is left to the scaler).
"""

from __future__ import annotations

import contextlib
import math

import torch

from nextscale import distributed


def resolve_precision(precision: str, device: torch.device) -> str:
    """``TrainConfig.precision`` for ``device``: "auto" is bf16 on a CUDA device that supports it, else fp32.

    Raises:
        ValueError: fp16 off CUDA.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on the CPU")
    return precision


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast of a resolved precision (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """The loss scaler: active under fp16 only (a disabled one passes every call through)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16", init_scale=2.0**11, growth_interval=1000)


def non_finite(sums: dict[str, torch.Tensor], precision: str, is_distributed: bool) -> str | None:
    """What is NaN or infinite among the loss and gradient norms of a step, on any rank; None when all are finite.

    Under fp16 an infinite gradient is the GradScaler's normal overflow signal (it skips that step), so only
    the loss counts there. One small all-reduce per step in a distributed run, so all ranks stop together.
    """
    watched = {"loss": sums["loss"]}
    if precision != "fp16":
        watched.update({name: value for name, value in sums.items() if name.startswith("grad_norm")})
    bad = torch.stack([(~torch.isfinite(value)).any().float() for value in watched.values()])
    if is_distributed:
        bad = distributed.all_reduce_sum(bad)
    if not bool(bad.any()):
        return None
    name = next(name for name, flag in zip(watched, bad.tolist()) if flag)  # the loss first: it is the cause
    value = float(watched[name].float().mean())
    return f"{name} is {value}" if not math.isfinite(value) else f"{name} is not finite on another rank"
