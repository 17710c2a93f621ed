"""Configuration of the raster-scan autoregressive baseline (the VAR paper's "AR" row of Table 3)."""

from __future__ import annotations

from dataclasses import dataclass

from nextscale.transformer.config import DepthRuleConfig, check_shape


@dataclass(frozen=True)
class RasterConfig(DepthRuleConfig):
    """Everything needed to rebuild a raster-scan transformer; saved as config.json beside its weights.

    The model predicts the ``side x side`` token map of a single-scale tokenization one token at a time in
    raster order (row by row, left to right). Its blocks are the VAR blocks, so the width / depth rule,
    the FFN, AdaLN and the attention are shared; only the sequence and the mask differ.

    Attributes:
        depth, embed_dim, num_heads, mlp_ratio, drop_path_rate, num_classes, shared_adaln, attn_l2_norm,
        norm_eps, cond_drop_rate, dropout, attn_dropout: as in ``TransformerConfig``.
        vocab_size: tokenizer codebook size V.
        side: side of the token map (L = side^2 tokens).
    """

    depth: int = 16
    embed_dim: int = 1024
    num_heads: int = 16
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1 * 16 / 24
    num_classes: int = 1000
    vocab_size: int = 4096
    side: int = 16
    shared_adaln: bool = False
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    cond_drop_rate: float = 0.1
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def __post_init__(self) -> None:
        check_shape(self)
        counts = {"num_classes": self.num_classes, "vocab_size": self.vocab_size, "side": self.side}
        for name, value in counts.items():  # a float (a hand-edited config.json) fails deep inside torch.empty
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if self.num_classes < 1 or self.vocab_size < 2 or self.side < 1:
            raise ValueError("num_classes >= 1, vocab_size >= 2 and side >= 1 are required")
        if self.shared_adaln:
            raise ValueError("the raster baseline has no shared-AdaLN variant (a VAR d36 feature)")

    @property
    def sequence_length(self) -> int:
        return self.side * self.side

    @property
    def scale_sides(self) -> tuple[int, ...]:
        """The tokenizer schedule this model fits: one ``side x side`` map."""
        return (self.side,)

    @property
    def null_class_id(self) -> int:
        return self.num_classes
