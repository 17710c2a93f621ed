"""Configuration of the next-scale transformer (VAR stage 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from nextscale.scales import SIDES_256, ScaleSchedule

ConfigT = TypeVar("ConfigT", bound="DepthRuleConfig")


class DepthRuleConfig:
    """What every transformer config (VAR, STAR, raster) derives the same way from its fields: the depth rule
    constructor, the scale schedule and the head dim. A plain base, not a dataclass, so each config still lists
    all its fields itself (and its config.json is exactly those fields)."""

    @classmethod
    def from_depth(cls: type[ConfigT], depth: int, **overrides) -> ConfigT:
        """The VAR shape rule, depth as the single dial: width 64 d, d heads, drop-path 0.1 d / 24 (overridable)."""
        shape = dict(depth=depth, embed_dim=64 * depth, num_heads=depth, drop_path_rate=0.1 * depth / 24)
        return cls(**{**shape, **overrides})

    @property
    def schedule(self) -> ScaleSchedule:
        return ScaleSchedule(self.scale_sides)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


def check_shape(config) -> None:
    """Checks every transformer config shares: depth, heads, width divisible by heads, the CFG drop rate."""
    if config.depth < 1 or config.num_heads < 1:
        raise ValueError("depth and num_heads must be >= 1")
    if config.embed_dim % config.num_heads:
        raise ValueError(f"embed_dim {config.embed_dim} is not divisible by num_heads {config.num_heads}")
    if not 0.0 <= config.cond_drop_rate < 1.0:
        raise ValueError(f"cond_drop_rate must be in [0, 1), got {config.cond_drop_rate}")


@dataclass(frozen=True)
class TransformerConfig(DepthRuleConfig):
    """Everything needed to rebuild a transformer; saved as config.json beside its weights.

    Build it with ``TransformerConfig.from_depth(d)``: depth is the single dial (width 64 d, d heads,
    drop-path 0.1 d / 24), exactly as the official ``build_vae_var``.

    Attributes:
        depth: number of transformer blocks.
        embed_dim: width C.
        num_heads: attention heads (head dim = C / heads, 64 for VAR).
        mlp_ratio: FFN hidden width / C.
        drop_path_rate: the last block's stochastic-depth rate (linear from 0 at block 0).
        num_classes: class labels 0..num_classes-1; id num_classes is the null class used by CFG.
        vocab_size: tokenizer codebook size V (logit width).
        code_dim: tokenizer code channels (input width of the word embedding).
        scale_sides: the token-map sides; must equal the tokenizer's.
        shared_adaln: one AdaLN projection shared by all blocks plus a per-block learned offset (VAR d36).
        attn_l2_norm: unit-normalised q/k with a learned per-head temperature (all released VAR models).
        norm_eps: LayerNorm epsilon.
        cond_drop_rate: probability of replacing a label by the null class during training (CFG).
        dropout: dropout after the FFN and attention projections.
        attn_dropout: dropout on attention weights.
    """

    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1 * 16 / 24
    num_classes: int = 1000
    vocab_size: int = 4096
    code_dim: int = 32
    scale_sides: tuple[int, ...] = SIDES_256
    shared_adaln: bool = False
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    cond_drop_rate: float = 0.1
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_shape(self)
        if self.num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        # Stored as the schedule's tuple of ints: a list (e.g. from a caller's own parsing) would make the frozen
        # config unhashable and unequal to the one its saved config.json gives back.
        object.__setattr__(self, "scale_sides", self.schedule.require_start_scale().sides)

    @property
    def null_class_id(self) -> int:
        return self.num_classes
