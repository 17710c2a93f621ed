"""The scale schedule shared by the tokenizer, the transformer and the sampler.

A VAR token sequence is K square token maps r_1..r_K of growing side, concatenated coarse to fine,
each row-major. Everything that depends on that layout (token counts, offsets, the scale index of
each position, the block-causal attention mask) is derived here, in one place.

References:
    Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction",
    NeurIPS 2024 (arXiv 2404.02905), Sec. 3.2 and Fig. 4 (block-wise causal mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

# The official schedules (VAR `train.py`): 256 px and 512 px images with a 16x downsampling tokenizer.
SIDES_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
SIDES_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
SIDES_1024 = (1, 2, 3, 4, 5, 7, 9, 12, 16, 21, 27, 36, 48, 64)


@dataclass(frozen=True)
class ScaleSchedule:
    """Sides of the K token maps, coarse to fine.

    Example: ``ScaleSchedule((1, 2, 4))`` has token counts (1, 4, 16), offsets (0, 1, 5, 21) and
    ``total_tokens == 21``; position 7 belongs to scale 2 (rows of the 4x4 map start at 5).
    """

    sides: tuple[int, ...]

    def __post_init__(self) -> None:
        sides = tuple(int(s) for s in self.sides)
        if any(isinstance(s, (bool, str)) or s != side for s, side in zip(self.sides, sides)):
            # int() would truncate 2.5 to 2 (and read "4" or True), silently giving another schedule
            raise ValueError(f"scale sides must be whole numbers, got {tuple(self.sides)}")
        if len(sides) == 0:
            raise ValueError("a scale schedule needs at least one scale, e.g. (1, 2, 4)")
        if sides[0] < 1:
            raise ValueError(f"scale sides are token-map sides of at least 1, got {sides}")
        if any(b <= a for a, b in zip(sides, sides[1:])):
            raise ValueError(f"scale sides must strictly increase, got {sides}")
        object.__setattr__(self, "sides", sides)

    def require_start_scale(self) -> ScaleSchedule:
        """Raise unless the first scale is 1x1: a next-scale transformer puts its start token there. (A
        tokenizer accepts any increasing sides, e.g. one 8x8 map for the raster-scan baseline.)"""
        if self.sides[0] != 1:
            raise ValueError(
                f"the first scale must be 1x1 (it holds the transformer's start token), got sides {self.sides}"
            )
        return self

    @property
    def num_scales(self) -> int:
        return len(self.sides)

    @property
    def final_side(self) -> int:
        return self.sides[-1]

    @cached_property
    def token_counts(self) -> tuple[int, ...]:
        return tuple(s * s for s in self.sides)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of every scale in the flat sequence, plus the total length at the end (K + 1 entries)."""
        out = [0]
        for count in self.token_counts:
            out.append(out[-1] + count)
        return tuple(out)

    @property
    def total_tokens(self) -> int:
        return self.offsets[-1]

    def scale_slice(self, scale_idx: int) -> slice:
        """The positions of scale ``scale_idx`` in the flat sequence; negative indices count from the last scale."""
        if not -self.num_scales <= scale_idx < self.num_scales:
            raise IndexError(f"scale {scale_idx} out of range for {self.num_scales} scales")
        scale_idx %= self.num_scales  # -1 is the last scale (offsets[-1 + 1] would be offsets[0]: an empty slice)
        return slice(self.offsets[scale_idx], self.offsets[scale_idx + 1])

    def level_ids(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The scale index of every position, shape (L,), int64."""
        counts = torch.tensor(self.token_counts, device=device)
        return torch.repeat_interleave(torch.arange(self.num_scales, device=device), counts)

    def block_causal_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean (L, L) mask, True where query q may attend to key k: scale(q) >= scale(k).

        Every token sees its own scale and all coarser ones, never a finer scale.
        """
        levels = self.level_ids(device)
        return levels[:, None] >= levels[None, :]

    def attention_bias(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        """The mask as an additive bias (0 where allowed, -inf elsewhere), shape (1, 1, L, L), as the
        official code passes it to scaled_dot_product_attention."""
        allowed = self.block_causal_mask(device)
        bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
        return bias[None, None]

    def split(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """(B, L, ...) -> K tensors (B, side_k^2, ...)."""
        if tokens.shape[1] != self.total_tokens:
            raise ValueError(f"expected {self.total_tokens} tokens for sides {self.sides}, got {tokens.shape[1]}")
        return list(torch.split(tokens, list(self.token_counts), dim=1))

    def concat(self, per_scale: list[torch.Tensor]) -> torch.Tensor:
        """K tensors (B, side_k^2, ...) -> (B, L, ...), checking every count."""
        if len(per_scale) != self.num_scales:
            raise ValueError(f"expected {self.num_scales} scales, got {len(per_scale)}")
        for k, (t, count) in enumerate(zip(per_scale, self.token_counts)):
            if t.shape[1] != count:
                raise ValueError(f"scale {k} should have {count} tokens (side {self.sides[k]}), got {t.shape[1]}")
        return torch.cat(per_scale, dim=1)


def default_scale_sides(latent_side: int) -> tuple[int, ...]:
    """The schedule used when only a resolution is given: sides double from 1 up to the latent side.

    Rule: 1, 2, 4, ... while below ``latent_side``, then ``latent_side`` itself, so the last scale always
    covers the whole latent grid. Examples: 8 -> (1, 2, 4, 8) (85 tokens; 32 px with 4x downsampling),
    16 -> (1, 2, 4, 8, 16) (341 tokens), 6 -> (1, 2, 4, 6), 1 -> (1,). The official 256 px schedule
    (``SIDES_256``) is denser; pass explicit sides for it.
    """
    if latent_side < 1:
        raise ValueError(f"the latent side must be at least 1, got {latent_side}")
    sides = [1]
    while sides[-1] * 2 < latent_side:
        sides.append(sides[-1] * 2)
    if sides[-1] != latent_side:
        sides.append(latent_side)
    return tuple(sides)
