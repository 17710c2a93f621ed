"""Configuration of the text-conditioned next-scale transformer (STAR)."""

from __future__ import annotations

from dataclasses import dataclass

from nextscale.scales import SIDES_256
from nextscale.transformer.config import DepthRuleConfig, check_shape


@dataclass(frozen=True)
class TextTransformerConfig(DepthRuleConfig):
    """Everything needed to rebuild a :class:`TextScaleTransformer`; saved as config.json beside its weights.

    Build it with ``TextTransformerConfig.from_depth(d)``: width 64 d, d heads, drop-path 0.1 d / 24.

    Attributes:
        depth, embed_dim, num_heads, mlp_ratio, drop_path_rate: as in ``TransformerConfig``.
        vocab_size: tokenizer codebook size V.
        code_dim: tokenizer code channels.
        scale_sides: the token-map sides; must equal the tokenizer's.
        text_dim: width D of the text encoder's hidden states and pooled vector.
        attn_l2_norm: cosine attention with a learned per-head temperature (self and cross).
        norm_eps: LayerNorm epsilon.
        logit_norm: a parameter-free LayerNorm before the head (all STAR releases).
        rope_theta: RoPE base (10000 in the releases; one 256-px config used 100).
        rope_norm: N, the common coordinate range of every scale (64 in the releases; 32 in that config).
        official_batch0_cross_attention: reproduce the official code, which adds sample 0's cross-attention
            output to every sample of the batch (STAR_REFERENCE.md section 8). The released weights were
            trained that way; models trained here use the per-sample result (False).
        cond_drop_rate: probability that training replaces a caption by the empty prompt (CFG).
        dropout: dropout after the FFN and attention projections.
        attn_dropout: dropout on attention weights.
        sampler_head: the masked-sampler head of the official star-1024-sampler checkpoint ("Causal-Driven
            Stable Sampling", ``transformer/text_sampler_head.py``), used by masked sampling at the finest scales.
        sampler_from_scale: the first scale masked sampling handles (official ``sample_from_idx``: 9).
        sampler_depth: the head's self-attention blocks (official: 3).
    """

    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1 * 16 / 24
    vocab_size: int = 4096
    code_dim: int = 32
    scale_sides: tuple[int, ...] = SIDES_256
    text_dim: int = 1024
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    logit_norm: bool = True
    rope_theta: float = 10000.0
    rope_norm: float = 64.0
    official_batch0_cross_attention: bool = False
    cond_drop_rate: float = 0.1
    dropout: float = 0.0
    attn_dropout: float = 0.0
    sampler_head: bool = False
    sampler_from_scale: int = 9
    sampler_depth: int = 3

    def __post_init__(self) -> None:
        check_shape(self)
        if self.text_dim < 1:
            raise ValueError("text_dim must be >= 1")
        if self.head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {self.head_dim}")
        if self.rope_theta <= 0 or self.rope_norm <= 0:
            raise ValueError("rope_theta and rope_norm must be > 0")
        object.__setattr__(self, "scale_sides", self.schedule.require_start_scale().sides)  # a tuple of ints
        if self.sampler_head:
            if not 0 < self.sampler_from_scale < len(self.scale_sides):
                raise ValueError(
                    f"sampler_from_scale must be in 1..{len(self.scale_sides) - 1} (a scale after the first), "
                    f"got {self.sampler_from_scale}"
                )
            if self.sampler_depth < 1:
                raise ValueError(f"sampler_depth must be >= 1, got {self.sampler_depth}")
