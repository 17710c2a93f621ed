"""The VAR transformer block: AdaLN-modulated self-attention and FFN, each gated and drop-pathed.

    x = x + DropPath(Attn(LN(x) * (1 + scale1) + shift1) * gamma1)
    x = x + DropPath(FFN (LN(x) * (1 + scale2) + shift2) * gamma2)

(gamma1, gamma2, scale1, scale2, shift1, shift2) come from the class condition. The block owns the
parameters that produce them (per block ``adaln = Linear(SiLU(cond))``, or with shared AdaLN (VAR d36)
a learned ``adaln_offset`` added to one model-level projection), but the model evaluates them
(``ScaleTransformer.block_modulations``), once per training step or once per sampling call, and the block
always receives the six vectors as one (B, 1, 6, C) tensor. The op order mirrors the official code so
that outputs match it bit for bit.

References:
    Tian et al., VAR (arXiv 2404.02905); official ``models/basic_var.py`` (``FFN``, ``AdaLNSelfAttn``).
    Peebles & Xie, DiT (AdaLN-Zero gating).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.adaln import AdaLNModulation, modulate
from nextscale.layers.attention import KeyValueStore, SelfAttention
from nextscale.layers.drop_path import DropPath
from nextscale.layers.feed_forward import FeedForward
from nextscale.transformer.config import TransformerConfig

# The six modulation vectors of a block, in the official order of the (B, 1, 6, C) tensor.
NUM_MODULATIONS = 6


class TransformerBlock(nn.Module):
    """One AdaLN self-attention block.

    Args:
        config: the transformer config (width, heads, MLP ratio, dropouts, shared AdaLN, norm eps).
        layer_idx: block index (used to address the KV cache).
        drop_path_rate: this block's stochastic-depth rate.
    """

    def __init__(self, config: TransformerConfig, layer_idx: int, drop_path_rate: float) -> None:
        super().__init__()
        embed_dim = config.embed_dim
        self.embed_dim, self.norm_eps = embed_dim, config.norm_eps
        self.shared_adaln = config.shared_adaln  # which modulation parameters exist (read by the model)
        self.attn = SelfAttention(
            embed_dim,
            config.num_heads,
            layer_idx,
            l2_norm=config.attn_l2_norm,
            attn_dropout=config.attn_dropout,
            proj_dropout=config.dropout,
        )
        self.ffn = FeedForward(embed_dim, round(embed_dim * config.mlp_ratio), config.dropout)
        self.drop_path = DropPath(drop_path_rate)
        # This block's modulation parameters, evaluated by the model (see ``ScaleTransformer.block_modulations``).
        if config.shared_adaln:
            # Learned per-block offset added to the model-level shared modulation (values set by init_weights).
            self.adaln_offset = nn.Parameter(torch.empty(1, 1, NUM_MODULATIONS, embed_dim))
        else:
            self.adaln = AdaLNModulation(embed_dim, embed_dim, NUM_MODULATIONS)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        # One parameter-free LayerNorm for both sub-layers: AdaLN supplies the affine part.
        return F.layer_norm(x, (self.embed_dim,), eps=self.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        modulation: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        kv_cache: KeyValueStore | None = None,
    ) -> torch.Tensor:
        """Run the block.

        Args:
            x: (B, l, C) token features.
            modulation: (B, 1, 6, C) this block's AdaLN vectors (gamma1, gamma2, scale1, scale2, shift1,
                shift2), whatever the AdaLN variant: ``adaln(cond)`` per block, or
                ``adaln_offset + shared_adaln(cond)`` with shared AdaLN. The model computes them with
                ``ScaleTransformer.block_modulations``.
            attn_bias: float additive mask (1, 1, l, l) in training; None with a cache.
            kv_cache: inference key/value store (see ``KVCache``).

        Returns:
            (B, l, C).
        """
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation.unbind(2)  # 6 x (B, 1, C)
        attn_out = self.attn(modulate(self.norm(x), scale1, shift1), attn_bias, kv_cache)
        x = x + self.drop_path(attn_out.mul_(gamma1))
        ffn_out = self.ffn(modulate(self.norm(x), scale2, shift2))
        return x + self.drop_path(ffn_out.mul(gamma2))
