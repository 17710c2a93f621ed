"""Adaptive LayerNorm (AdaLN): a condition vector predicts per-channel scales, shifts and gates.

A LayerNorm without learned affine parameters normalises x; a linear map of SiLU(cond) then gives
``chunks`` vectors of width C (for a VAR block: gamma1, gamma2, scale1, scale2, shift1, shift2), and
the sub-layer input is ``LN(x) * (1 + scale) + shift``.

References:
    Peebles & Xie, "Scalable Diffusion Models with Transformers" (DiT), ICCV 2023, Sec. 3.2 (adaLN-Zero).
    Tian et al., VAR (arXiv 2404.02905); official ``models/basic_var.py`` (``AdaLNSelfAttn``, ``AdaLNBeforeHead``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from nextscale.layers.fused import FusedRegions


def modulate(normed: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``normed * (1 + scale) + shift``, in the official op order (bit-exact against VAR).

    Args:
        normed: (B, l, C) LayerNorm output.
        scale, shift: (B, 1, C) per-sample modulation, broadcast over tokens.

    Returns:
        (B, l, C).
    """
    return normed.mul(scale.add(1)).add_(shift)


class AdaLNModulation(nn.Module):
    """``Linear(SiLU(cond))`` viewed as ``chunks`` modulation vectors per sample.

    Args:
        cond_dim: width of the condition vector.
        embed_dim: width C of each modulation vector.
        chunks: how many C-vectors to predict (6 for a transformer block, 2 before the head).
    """

    def __init__(self, cond_dim: int, embed_dim: int, chunks: int) -> None:
        super().__init__()
        self.embed_dim, self.chunks = embed_dim, chunks
        self.linear = nn.Linear(cond_dim, chunks * embed_dim)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, cond_dim) -> (B, 1, chunks, C); the singleton axis broadcasts over tokens."""
        return self.linear(F.silu(cond)).view(-1, 1, self.chunks, self.embed_dim)


class AdaLNHeadNorm(nn.Module):
    """The final AdaLN before the logits head: ``LN(x) * (1 + scale) + shift`` with (scale, shift) from cond.

    Args:
        embed_dim: width C of the token features.
        cond_dim: width of the condition vector.
        eps: LayerNorm epsilon.
    """

    # The compiled norm-and-modulate used at inference (set by ``FusedKernels.use_fused_kernels``), or None.
    fused: FusedRegions | None = None

    def __init__(self, embed_dim: int, cond_dim: int, eps: float) -> None:
        super().__init__()
        self.embed_dim, self.eps = embed_dim, eps
        self.adaln = AdaLNModulation(cond_dim, embed_dim, chunks=2)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, l, C), cond (B, cond_dim) -> (B, l, C)."""
        scale, shift = self.adaln(cond).unbind(2)  # 2 x (B, 1, C)
        if self.fused is not None and not self.training:  # one fused kernel (the head casts its input anyway)
            return self.fused.norm_modulate(x, scale, shift, self.eps, None)
        return modulate(F.layer_norm(x, (self.embed_dim,), eps=self.eps), scale, shift)
