"""A run's numeric precision: what "auto" resolves to, the autocast and GradScaler it needs, and the check that
stops a run whose loss or gradients are no longer finite (under fp16 an infinite gradient is left to the scaler).

The fp16 loss scaler is the official VAR one (``utils/amp_sc.py`` ``AmpOptimizer``): initial scale 2**11, doubled
after 1000 overflow-free steps, halved on an overflow, and reset to 2**15 after any step that ran with a larger
scale (fp16 overflows at 65504, so multiplying by more is risky).

References: VAR ``utils/amp_sc.py``; VAR_REFERENCE.md section 5.
"""

from __future__ import annotations

import contextlib
import math

import torch

from nextscale import distributed
from nextscale.sampling.precision import cuda_native_bf16


def resolve_precision(precision: str, device: torch.device) -> str:
    """``TrainConfig.precision`` for ``device``: "auto" is bf16 on a GPU that computes it natively (Ampere or
    later), fp16 with loss scaling on older GPUs (they only emulate bf16, far slower than their fp16), else fp32.

    Raises:
        ValueError: fp16 off CUDA.
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if cuda_native_bf16(device) else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on the CPU")
    return precision


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast of a resolved precision (none for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


MAX_LOSS_SCALE = 2.0**15  # VAR's cap on the fp16 loss scale


class CappedGradScaler(torch.amp.GradScaler):
    """A GradScaler whose scale is brought back to ``MAX_LOSS_SCALE`` after any step that used a larger one.

    As in the official trainer the cap looks at the scale this step ran with (before ``update``), so a growth to
    2**16 is used for one step and then undone; the growth tracker is left as it is (``update(new_scale=...)``).
    Worked example: scale 2**15 and 999 clean steps -> this step's update doubles it to 2**16; the next step runs
    at 2**16 and its update sets 2**15 again.
    """

    def update(self, new_scale: float | torch.Tensor | None = None) -> None:
        if new_scale is None and self.is_enabled() and self.get_scale() > MAX_LOSS_SCALE:
            new_scale = MAX_LOSS_SCALE
        super().update(new_scale)


def grad_scaler(precision: str, device: torch.device) -> CappedGradScaler:
    """The loss scaler: active under fp16 only (a disabled one passes every call through)."""
    return CappedGradScaler(device.type, enabled=precision == "fp16", init_scale=2.0**11, growth_interval=1000)


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
