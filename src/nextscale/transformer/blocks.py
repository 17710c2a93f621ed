"""The VAR transformer block: AdaLN-modulated self-attention and FFN, each gated and drop-pathed.

    x = x + DropPath(Attn(LN(x) * (1 + scale1) + shift1) * gamma1)
    x = x + DropPath(FFN (LN(x) * (1 + scale2) + shift2) * gamma2)

(gamma1, gamma2, scale1, scale2, shift1, shift2) come from the class condition. Every block receives one
conditioning type, a :class:`BlockCondition` (the (B, C) condition vector and, with shared AdaLN (VAR
d36), the model-level shared modulation), and evaluates its own modulation from it inside its forward:
per block ``adaln = Linear(SiLU(cond))``, or ``adaln_offset + shared``. (Evaluating it inside the block
keeps FSDP2 per-block sharding correct: a block's parameters are gathered only during its forward.) The
op order mirrors the official code so that outputs match it bit for bit.

References:
    Tian et al., VAR (arXiv 2404.02905); official ``models/basic_var.py`` (``FFN``, ``AdaLNSelfAttn``).
    Peebles & Xie, DiT (AdaLN-Zero gating).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.adaln import AdaLNModulation, modulate
from nextscale.layers.attention import KeyValueStore, SelfAttention
from nextscale.layers.drop_path import DropPath
from nextscale.layers.feed_forward import FeedForward
from nextscale.layers.fused import FusedRegions, region_dtype
from nextscale.transformer.config import DepthRuleConfig, TransformerConfig
from nextscale.transformer.raster_config import RasterConfig


@dataclass(frozen=True)
class BlockCondition:
    """What every block is conditioned on: the (B, C) condition vector, and the model-level (B, 1, 6, C)
    shared AdaLN modulation when the model has one (None otherwise).

    ``modulations`` is an optional per-call memo (block index -> that block's (B, 1, 6, C) modulation). A
    sampling call passes an empty dict: every block fills its entry at the first scale and reuses it at the
    others, so the AdaLN projections (a third of a d16 model's weights) run once per call instead of once per
    scale, with the same values. The entry is computed inside the block's forward, so FSDP2 still sees the
    block's parameters only there. Training leaves it None (the modulation must stay in the autograd graph).
    """

    vector: torch.Tensor
    shared: torch.Tensor | None = None
    modulations: dict[int, torch.Tensor] | None = None

    def to(self, dtype: torch.dtype) -> BlockCondition:
        """A copy in ``dtype`` (without the memo, whose entries would be in the old dtype)."""
        return BlockCondition(self.vector.to(dtype), None if self.shared is None else self.shared.to(dtype))

    def with_memo(self) -> BlockCondition:
        """The same condition with an empty per-call modulation memo."""
        return BlockCondition(self.vector, self.shared, modulations={})


# The six modulation vectors of a block, in the official order of the (B, 1, 6, C) tensor.
NUM_MODULATIONS = 6


def block_self_attention(config: DepthRuleConfig, layer_idx: int) -> SelfAttention:
    """A block's self-attention as its transformer config (VAR, raster or STAR) sets it."""
    return SelfAttention(
        config.embed_dim,
        config.num_heads,
        layer_idx,
        l2_norm=config.attn_l2_norm,
        attn_dropout=config.attn_dropout,
        proj_dropout=config.dropout,
    )


def block_feed_forward(config: DepthRuleConfig) -> FeedForward:
    """A block's FFN (hidden width ``mlp_ratio`` C), from any transformer config."""
    return FeedForward(config.embed_dim, round(config.embed_dim * config.mlp_ratio), config.dropout)


class TransformerBlock(nn.Module):
    """One AdaLN self-attention block.

    Args:
        config: the model config (width, heads, MLP ratio, dropouts, shared AdaLN, norm eps); VAR's or the
            raster baseline's.
        layer_idx: block index (used to address the KV cache).
        drop_path_rate: this block's stochastic-depth rate.
    """

    # The compiled elementwise regions used at inference (``FusedKernels.use_fused_kernels``), or None: exact ops.
    fused: FusedRegions | None = None

    def __init__(self, config: TransformerConfig | RasterConfig, layer_idx: int, drop_path_rate: float) -> None:
        super().__init__()
        embed_dim = config.embed_dim
        self.embed_dim, self.norm_eps = embed_dim, config.norm_eps
        self.shared_adaln = config.shared_adaln  # which modulation parameters exist (read by the model)
        self.layer_idx = layer_idx
        self.attn = block_self_attention(config, layer_idx)
        self.ffn = block_feed_forward(config)
        self.drop_path = DropPath(drop_path_rate)
        # This block's modulation parameters (evaluated by ``modulation``).
        if config.shared_adaln:
            # Learned per-block offset added to the model-level shared modulation (values set by init_weights).
            self.adaln_offset = nn.Parameter(torch.empty(1, 1, NUM_MODULATIONS, embed_dim))
        else:
            self.adaln = AdaLNModulation(embed_dim, embed_dim, NUM_MODULATIONS)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        # One parameter-free LayerNorm for both sub-layers: AdaLN supplies the affine part.
        return F.layer_norm(x, (self.embed_dim,), eps=self.norm_eps)

    def modulation(self, condition: BlockCondition) -> torch.Tensor:
        """This block's (B, 1, 6, C) AdaLN vectors (gamma1, gamma2, scale1, scale2, shift1, shift2), taken from
        the condition's memo when an earlier scale of the same call has computed them."""
        memo = condition.modulations
        if memo is not None and self.layer_idx in memo:
            return memo[self.layer_idx]
        if self.shared_adaln:
            modulation = self.adaln_offset + condition.shared
        else:
            modulation = self.adaln(condition.vector)
        if memo is not None:
            memo[self.layer_idx] = modulation
        return modulation

    def forward(
        self,
        x: torch.Tensor,
        condition: BlockCondition,
        attn_bias: torch.Tensor | None = None,
        kv_cache: KeyValueStore | None = None,
    ) -> torch.Tensor:
        """Run the block.

        Args:
            x: (B, l, C) token features.
            condition: the class condition (and shared modulation), see :class:`BlockCondition`.
            attn_bias: float additive mask (1, 1, l, l) in training; None with a cache.
            kv_cache: inference key/value store (see ``KVCache``).

        Returns:
            (B, l, C).
        """
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.modulation(condition).unbind(2)  # 6 x (B, 1, C)
        if self.fused is not None and not self.training:
            # Three fused kernels for the norms, modulations and residuals (no drop-path at inference).
            dtype = region_dtype(x)
            h = self.fused.norm_modulate(x, scale1, shift1, self.norm_eps, dtype)
            attn_out = self.attn(h, attn_bias, kv_cache)
            x, h = self.fused.gated_add_norm_modulate(x, attn_out, gamma1, scale2, shift2, self.norm_eps, dtype)
            return self.fused.gated_add(x, self.ffn(h), gamma2)
        attn_out = self.attn(modulate(self.norm(x), scale1, shift1), attn_bias, kv_cache)
        x = x + self.drop_path(attn_out.mul_(gamma1))
        ffn_out = self.ffn(modulate(self.norm(x), scale2, shift2))
        return x + self.drop_path(ffn_out.mul(gamma2))
