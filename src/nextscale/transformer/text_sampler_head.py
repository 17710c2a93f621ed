"""The masked-sampler head of STAR's star-1024-sampler checkpoint ("Causal-Driven Stable Sampling").

At the finest scales the official sampler does not draw every token of a scale at once: it decides them in a
few steps, MaskGIT-style, and from some step on asks this small head for the logits. The head sees

- a start token ``text_proj(pooled text) + start_pos``,
- for every position of the scale, ``word_embed(code vector decided so far, or 0) + level_embed(scale)``,
  fused channel-wise (``fuse``, 2C -> C) with the start token and the main transformer's final hidden state of
  that position,

then runs ``depth`` self-attention blocks (full attention within the scale, the 2-D RoPE rows of the scale, no
cross-attention, no cache) and a parameter-free LayerNorm + ``head``. The start token is dropped from the
logits. ``sampling/masked_sampling.py`` runs the steps.

Official names (``models/var_drop.py``, ``enable_adaptive_norm=True``): ``encoder_proj2`` (text_proj),
``pos_start_last`` (start_pos), ``word_embed_head`` (word_embed), ``lvl_embed_2`` (level_embed), ``head_proj``
(fuse), ``feat_extract_blocks`` (blocks), ``head_logits2`` (head).

References: STAR_REFERENCE.md sections 9 and 10; official ``models/var_drop.py`` (``sample``,
``autoregressive_infer_cfg``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.attention import INITIAL_LOG_TEMPERATURE
from nextscale.layers.drop_path import DropPath, linear_drop_path_rates
from nextscale.transformer.blocks import block_feed_forward, block_self_attention
from nextscale.transformer.text_config import TextTransformerConfig


class SelfAttentionBlock(nn.Module):
    """The official ``AttnBlock`` without cross-attention: x + DropPath(SelfAttn(LN x)), x + DropPath(FFN(LN x)),
    one parameter-free LayerNorm for both."""

    def __init__(self, config: TextTransformerConfig, layer_idx: int, drop_path_rate: float) -> None:
        super().__init__()
        self.embed_dim, self.norm_eps = config.embed_dim, config.norm_eps
        self.attn = block_self_attention(config, layer_idx)
        self.ffn = block_feed_forward(config)
        self.drop_path = DropPath(drop_path_rate)

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (self.embed_dim,), eps=self.norm_eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n, C) -> (B, n, C), rotated by ``rope`` (n, Dh/2); every token attends to every other unless
        ``attn_bias`` (1, 1, n, n) masks some pairs."""
        x = x + self.drop_path(self.attn(self.norm(x), attn_bias, None, rope))
        return x + self.drop_path(self.ffn(self.norm(x)))


class MaskedSamplerHead(nn.Module):
    """The head's parameters and its forward (see the module docstring).

    Args:
        config: the STAR config (width, heads, vocabulary, code and text widths, ``sampler_depth``).
    """

    def __init__(self, config: TextTransformerConfig) -> None:
        super().__init__()
        embed_dim = config.embed_dim
        self.embed_dim, self.norm_eps = embed_dim, config.norm_eps
        self.text_proj = nn.Linear(config.text_dim, embed_dim)
        self.start_pos = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.word_embed = nn.Linear(config.code_dim, embed_dim)
        self.level_embed = nn.Embedding(config.schedule.num_scales, embed_dim)
        self.fuse = nn.Linear(2 * embed_dim, embed_dim)
        # The official head's blocks take the first drop-path rates of the main model's linear rule.
        rates = linear_drop_path_rates(config.drop_path_rate, config.depth)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(config, i, rates[i] if i < len(rates) else rates[-1])
            for i in range(config.sampler_depth)
        )
        self.head = nn.Linear(embed_dim, config.vocab_size)

    def start(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled text -> (B, C): the start vector before ``start_pos`` (computed once per call)."""
        return self.text_proj(pooled)

    def forward(
        self,
        start: torch.Tensor,
        hidden: torch.Tensor,
        codes: torch.Tensor,
        levels: torch.Tensor,
        rope: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of the positions of one scale (sampling) or of several (training, with a same-scale mask).

        Args:
            start: (R, C) from :meth:`start` (R rows: B, or 2B with guidance).
            hidden: (R, n, C) the main transformer's final hidden states of these positions.
            codes: (B, n, code_dim) the code vectors known so far, zero elsewhere; both halves of a guided batch
                see the same ones (R = 2B).
            levels: (n,) the scale of every position (indexes ``level_embed``).
            rope: (1 + n, Dh/2) RoPE rows: the start token's, then the positions'.
            attn_bias: None (one scale: full attention) or the (1, 1, 1 + n, 1 + n) additive mask of
                :func:`same_scale_bias`.

        Returns:
            (R, n, V) float32 logits.
        """
        dtype = hidden.dtype
        rows = hidden.shape[0]
        first = (start[:, None] + self.start_pos).to(dtype)  # (R, 1, C)
        words = self.word_embed(codes.to(dtype)).repeat(rows // codes.shape[0], 1, 1)  # (R, n, C)
        known = torch.cat((first, words + self.level_embed(levels).to(dtype)), dim=1)  # (R, 1 + n, C)
        seen = torch.cat((first, hidden), dim=1)  # (R, 1 + n, C)
        x = self.fuse(torch.cat((known, seen), dim=-1))
        for block in self.blocks:
            x = block(x, rope, attn_bias)
        x = F.layer_norm(x.float(), (self.embed_dim,), eps=self.norm_eps)
        return self.head(x).float()[:, 1:]

    @torch.no_grad()
    def warm_start(self, head: nn.Linear) -> None:
        """Start as the main model's own predictor: ``fuse`` passes the main hidden state through (identity on that
        half, zero on the known codes), every block's residual branches end in zero projections (identity
        blocks), and ``head`` copies the main model's. With the main model's logit LayerNorm the head's logits then
        equal the main model's exactly, and training can only add what the known codes tell (a choice of ours: the
        official head starts from ``init_weights``)."""
        width = self.embed_dim
        self.fuse.weight.zero_()
        self.fuse.weight[:, width:].copy_(torch.eye(width))
        self.fuse.bias.zero_()
        for block in self.blocks:
            for projection in (block.attn.proj, block.ffn.fc2):
                projection.weight.zero_()
                projection.bias.zero_()
        self.head.load_state_dict(head.state_dict())

    @torch.no_grad()
    def init_weights(self, init_std: float) -> None:
        """The official ``init_weights`` as it reaches the head: truncated-normal Linear/Embedding weights and start
        vector, zero biases, q/v biases zero and temperature 4; unlike the main model, no head or residual
        scaling (the official loops touch ``head_logits`` and ``blocks`` only)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=init_std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
        nn.init.trunc_normal_(self.start_pos, std=math.sqrt(1 / (3 * self.embed_dim)))
        for block in self.blocks:
            block.attn.q_bias.zero_()
            block.attn.v_bias.zero_()
            if block.attn.l2_norm:
                block.attn.log_temperature.fill_(INITIAL_LOG_TEMPERATURE)


def same_scale_bias(levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The head's training mask over [start token, positions]: a position attends to the positions of its own scale,
    and the start token and every position attend to each other (official ``attn_mask`` of ``forward_sampler``).

    Args:
        levels: (n,) the scale of every position.

    Returns:
        (1, 1, 1 + n, 1 + n) additive bias: 0 where attention is allowed, -inf elsewhere.
    """
    allowed = levels[:, None] == levels[None, :]
    allowed = torch.nn.functional.pad(allowed, (1, 0, 1, 0), value=True)  # the start token row and column
    bias = torch.zeros(allowed.shape, dtype=dtype, device=levels.device).masked_fill_(~allowed, float("-inf"))
    return bias[None, None]
