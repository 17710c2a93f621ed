"""Training STAR's masked-sampler head (the official ``train_sampler.py`` stage) on a frozen text model.

The head learns to predict the tokens of the scales it samples from three things: the frozen model's final hidden
states there, the text start token, and a random part of the true code vectors. Per sample a known fraction
``arccos(r) / (pi / 2)`` is drawn with r uniform in [0, 1) (mean 2/pi: the same arccos law that reveals tokens at
sampling), and each position of those scales is known where a uniform draw falls below it (official
``Scheduler.add_mask_for_training``). All its scales are processed at once, each position seeing its own scale
and the start token (``same_scale_bias``).

Loss: the mean cross-entropy over the positions that are *not* known, the MaskGIT objective, which is what
sampling asks of the head (it reads only undecided positions' logits). The official trainer, by the fact sheet,
scores V + 1 classes with the known positions' target the extra class; its code is not in our reference and the
released head has V outputs, so that variant is not reproduced.
"""

from __future__ import annotations

import math

import torch


def draw_known(batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Which positions are known: (B, n) bool, a per-sample fraction arccos(r) / (pi / 2) of them, drawn on the
    CPU (two draws: r (B,), then (B, n) uniforms) from ``generator`` or torch's global generator."""
    ratio = torch.arccos(torch.rand(batch, generator=generator)) / (math.pi * 0.5)  # (B,)
    return torch.rand(batch, length, generator=generator) < ratio[:, None]


def hidden_position_mean(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(B, n) per-position values -> their mean over the positions that are not known (0 when every one is)."""
    hidden = (~known).to(values.dtype)
    return (values * hidden).sum() / hidden.sum().clamp(min=1)
