"""The STAR transformer block: self-attention with 2-D RoPE, cross-attention to the text, FFN.

    x = x + DropPath(SelfAttn(LN(x), rope))
    x = x + CrossAttn(LN(x), text)          (no DropPath, as in the official code)
    x = x + DropPath(FFN(LN(x)))

One parameter-free LayerNorm serves all three sub-layers; there is no AdaLN (the condition enters through
the first token map and the cross-attention).

References:
    Ma et al., STAR (arXiv 2406.10797); official ``models/basic_var.py`` (``AttnBlock``);
    STAR_REFERENCE.md sections 4.2 and 8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.attention import KeyValueStore
from nextscale.layers.cross_attention import ContextKeyValues, CrossAttention
from nextscale.layers.drop_path import DropPath
from nextscale.layers.fused import FusedRegions, region_dtype
from nextscale.transformer.blocks import block_feed_forward, block_self_attention
from nextscale.transformer.text_config import TextTransformerConfig


class TextBlock(nn.Module):
    """One STAR block.

    Args:
        config: the text transformer config.
        layer_idx: block index (addresses the KV cache).
        drop_path_rate: this block's stochastic-depth rate.
    """

    # The compiled elementwise regions used at inference (``FusedKernels.use_fused_kernels``), or None: exact ops.
    fused: FusedRegions | None = None

    def __init__(self, config: TextTransformerConfig, layer_idx: int, drop_path_rate: float) -> None:
        super().__init__()
        embed_dim = config.embed_dim
        self.embed_dim, self.norm_eps = embed_dim, config.norm_eps
        self.batch0_cross_attention = config.official_batch0_cross_attention
        self.attn = block_self_attention(config, layer_idx)
        self.cross_attn = CrossAttention(
            embed_dim,
            config.text_dim,
            config.num_heads,
            l2_norm=config.attn_l2_norm,
            attn_dropout=config.attn_dropout,
            proj_dropout=config.dropout,
        )
        self.ffn = block_feed_forward(config)
        self.drop_path = DropPath(drop_path_rate)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.embed_dim,), eps=self.norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        text: ContextKeyValues,
        text_bias: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        kv_cache: KeyValueStore | None = None,
    ) -> torch.Tensor:
        """Run the block.

        Args:
            x: (B, l, C) token features.
            rope: (l, Dh / 2) complex rotations of these positions.
            text: this block's projected text keys/values, (B, H, T, Dh) each.
            text_bias: (B, 1, 1, T) padding bias of the text.
            attn_bias: float block-causal mask (1, 1, l, l) in training; None with a cache.
            kv_cache: inference key/value store.

        Returns:
            (B, l, C).
        """
        if self.fused is not None and not self.training:
            return self._fused_forward(x, rope, text, text_bias, attn_bias, kv_cache)
        x = x + self.drop_path(self.attn(self.norm(x), attn_bias, kv_cache, rope))
        x = x + self._cross(self.norm(x), text, text_bias)
        return x + self.drop_path(self.ffn(self.norm(x)))

    def _cross(self, normed: torch.Tensor, text: ContextKeyValues, text_bias: torch.Tensor) -> torch.Tensor:
        cross = self.cross_attn(normed, text, text_bias)  # (B, l, C)
        if self.batch0_cross_attention:
            # The official AttnBlock indexes the result with [0]: sample 0's output reaches every row.
            cross = cross[0]
        return cross

    def _fused_forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        text: ContextKeyValues,
        text_bias: torch.Tensor,
        attn_bias: torch.Tensor | None,
        kv_cache: KeyValueStore | None,
    ) -> torch.Tensor:
        """The inference forward with fused norms and residuals (no drop-path at inference)."""
        dtype = region_dtype(x)
        h = self.fused.norm(x, self.norm_eps, dtype)
        x, h = self.fused.add_norm(x, self.attn(h, attn_bias, kv_cache, rope), self.norm_eps, dtype)
        x, h = self.fused.add_norm(x, self._cross(h, text, text_bias), self.norm_eps, dtype)
        return x + self.ffn(h)
