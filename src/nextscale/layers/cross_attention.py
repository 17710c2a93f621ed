"""Cross-attention from image tokens to text hidden states (STAR), with VAR's cosine attention.

Queries come from the (normalised) image tokens, keys and values from the text encoder's hidden states
through one fused projection; padding tokens of the text are masked out. The text side never changes
during sampling, so its keys and values are projected once per call (:meth:`CrossAttention.project_context`)
and reused at every scale.

References:
    Ma et al., STAR (arXiv 2406.10797); official ``models/basic_var.py`` (``Attention`` with ``is_cross``):
    ``mat_q`` + q bias, ``mat_kv`` with a zero k bias, the same L2-normalised q/k and temperature cap as
    the self-attention, no RoPE, no DropPath. STAR_REFERENCE.md section 4.4.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.attention import MultiHeadAttention, cosine_queries


def padding_bias(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, T) mask (1 = real token) -> (B, 1, 1, T) additive bias: 0 where the mask is 1, -inf elsewhere.

    As in the official code, only the value 1 keeps a token; a row without any kept token would give NaN,
    so it is refused here.
    """
    if mask.ndim != 2:
        raise ValueError(f"text mask must be (B, T), got {tuple(mask.shape)}")
    keep = mask == 1
    if not keep.any(dim=1).all():
        raise ValueError("a text row has no real token (mask all 0); encode at least the empty prompt")
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~keep, float("-inf"))
    return bias[:, None, None, :]


@dataclass
class ContextKeyValues:
    """Projected text keys (normalised) and values of one layer: each (B, H, T, Dh)."""

    keys: torch.Tensor
    values: torch.Tensor


class CrossAttention(MultiHeadAttention):
    """Multi-head cross-attention with unit-normalised q/k and a learned per-head temperature.

    Args:
        embed_dim: width C of the image tokens.
        context_dim: width D of the text hidden states.
        num_heads: H; head_dim = C / H.
        l2_norm: cosine attention (all STAR releases); otherwise softmax scale 0.25 / sqrt(Dh).
        attn_dropout, proj_dropout: see :class:`MultiHeadAttention`.
    """

    # Called outside forward (once per sampling call or training step, for every block): a sharding wrapper
    # (FSDP2) must gather the weights for this method too, see nextscale.distributed.wrap_model.
    FSDP_FORWARD_METHODS = ("project_context",)

    def __init__(
        self,
        embed_dim: int,
        context_dim: int,
        num_heads: int,
        l2_norm: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_heads, l2_norm, attn_dropout, proj_dropout)
        self.q = nn.Linear(embed_dim, embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        # Keys and values in one matmul; the bias is assembled as [k_bias (zero), v_bias].
        self.kv = nn.Linear(context_dim, 2 * embed_dim, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.add_scores_and_output()

    def project_context(self, context: torch.Tensor) -> ContextKeyValues:
        """(B, T, D) text hidden states -> keys (normalised when l2_norm) and values, each (B, H, T, Dh)."""
        B, T, _ = context.shape
        bias = torch.cat((self.k_bias, self.v_bias))
        kv = F.linear(context, self.kv.weight, bias=bias).view(B, T, 2, self.num_heads, self.head_dim)
        keys, values = kv.permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, T, Dh)
        if self.l2_norm:
            keys = F.normalize(keys, dim=-1)
        return ContextKeyValues(keys, values)

    def forward(self, x: torch.Tensor, context: ContextKeyValues, context_bias: torch.Tensor) -> torch.Tensor:
        """Attend from image tokens to the text.

        Args:
            x: (B, l, C) normalised image tokens.
            context: this layer's projected text keys/values (from :meth:`project_context`).
            context_bias: (B, 1, 1, T) additive padding bias (:func:`padding_bias`).

        Returns:
            (B, l, C).
        """
        B, l, _ = x.shape
        q = F.linear(x, self.q.weight, bias=self.q_bias).view(B, l, self.num_heads, self.head_dim).transpose(1, 2)
        if self.l2_norm:
            q = cosine_queries(q, self.log_temperature)  # keys were normalised in project_context
        return self.attend_and_project(q, context.keys, context.values, context_bias.to(q.dtype))
