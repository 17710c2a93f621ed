"""2-D rotary position embedding with STAR's cross-scale normalisation.

Every token of an h x w map gets a column coordinate ``x = j / (w - 1) * N`` and a row coordinate
``y = i / (h - 1) * N`` (the 1 x 1 map sits at 0), so each scale spans the same range [0, N] and the
same place in the image gets the same angles at every scale. Per head (head dim D) there are D / 4
frequencies ``f_j = 1 / theta^(4 j / D)``; the first D / 2 channels rotate by ``x * f_j``, the last
D / 2 by ``y * f_j``. Channels are read as consecutive (real, imaginary) pairs: pair m of a head is
multiplied by table entry m.

Worked example (D = 64, N = 64): on the 3 x 3 map the centre token (row 1, column 1) has x = y = 32;
on the 5 x 5 map the centre (2, 2) also has x = y = 32, so q.k between the two centres carries no
relative rotation, while the 3 x 3 map's top-left token (0, 0) differs by 32 in both axes.

References:
    Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021.
    Ma et al., STAR (arXiv 2406.10797); official ``models/embed_rope.py`` (``init_t_xy``,
    ``compute_axial_cis``, ``apply_rotary_emb``); STAR_REFERENCE.md section 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def rope_frequencies(head_dim: int, theta: float) -> torch.Tensor:
    """The D / 4 base frequencies ``1 / theta^(4 j / D)``, float32 (computed as the official code does)."""
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
    exponents = torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim
    return 1.0 / (theta**exponents)


def normalized_coordinates(sides: Sequence[int], norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row coordinates of every token of every scale, each scale mapped onto [0, norm].

    Args:
        sides: square token-map sides, coarse to fine (the scale schedule).
        norm: N, the common range.

    Returns:
        (x, y): two (L,) float32 tensors, scales concatenated, row-major inside a scale.
    """
    xs, ys = [], []
    for side in sides:
        positions = torch.arange(side * side, dtype=torch.float32)
        column, row = positions % side, torch.div(positions, side, rounding_mode="floor")
        if side > 1:
            # coordinate / largest coordinate, then times N (the official order of operations)
            column, row = column / (side - 1) * norm, row / (side - 1) * norm
        else:
            column, row = torch.zeros(1), torch.zeros(1)
        xs.append(column)
        ys.append(row)
    return torch.cat(xs), torch.cat(ys)


def normalized_rope_table(sides: Sequence[int], head_dim: int, theta: float, norm: float) -> torch.Tensor:
    """The rotation of every position: (L, D / 2) complex64, entries [0, D/4) horizontal, [D/4, D/2) vertical."""
    freqs = rope_frequencies(head_dim, theta)  # (D/4,)
    x, y = normalized_coordinates(sides, norm)
    angles = torch.cat((torch.outer(x, freqs), torch.outer(y, freqs)), dim=-1)  # (L, D/2)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of ``x`` by ``table``.

    Args:
        x: (B, H, l, D) queries or keys.
        table: (l, D / 2) complex rotations of these l positions.

    Returns:
        (B, H, l, D) in x's dtype; the rotation itself is computed in float32.
    """
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, H, l, D/2)
    return torch.view_as_real(pairs * table).flatten(-2).type_as(x)
