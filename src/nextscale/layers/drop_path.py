"""Stochastic depth: drop a whole residual branch per sample during training.

References:
    Huang et al., "Deep Networks with Stochastic Depth", ECCV 2016.
    The per-sample, rescaled-by-1/keep form follows timm ``layers/drop.py`` (``drop_path``), as used by VAR.
"""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero the branch ``x`` for a random subset of samples and rescale the survivors.

    Args:
        x: (B, ...) the output of a residual branch.
        rate: probability of dropping one sample's branch, in [0, 1).
        training: the branch is only dropped in training; otherwise ``x`` is returned as is.

    Returns:
        (B, ...) ``x`` times a per-sample factor that is 0 (prob. ``rate``) or 1 / (1 - rate), so the
        expected value is unchanged and evaluation needs no rescaling.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # one draw per sample
    return x * mask.div_(keep)


def linear_drop_path_rates(max_rate: float, depth: int) -> list[float]:
    """Per-block rates growing linearly from 0 (first block) to ``max_rate`` (last block), as in VAR and STAR.

    Computed on the CPU, so that a model can also be built under a meta or CUDA default device.
    """
    return torch.linspace(0, max_rate, depth, device="cpu").tolist()


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; active only in training mode."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}"
