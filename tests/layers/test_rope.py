"""Normalised 2-D RoPE: the formula against the official tables, and its geometric invariants."""

import math

import pytest
import torch

from nextscale.layers.rope import apply_rope, normalized_coordinates, normalized_rope_table, rope_frequencies
from nextscale.scales import SIDES_256, SIDES_1024

N = 64


def test_every_scale_spans_zero_to_n_and_the_first_map_sits_at_zero():
    for sides in (SIDES_256, SIDES_1024, (1, 2, 4)):
        x, y = normalized_coordinates(sides, N)
        start = 0
        for side in sides:
            xs, ys = x[start : start + side * side], y[start : start + side * side]
            start += side * side
            if side == 1:
                assert xs.item() == 0 and ys.item() == 0
                continue
            assert xs.min() == 0 and xs.max() == N and ys.min() == 0 and ys.max() == N
            # row-major: x varies fastest
            assert xs[1] == pytest.approx(N / (side - 1)) and ys[1] == 0
            assert ys[side] == pytest.approx(N / (side - 1)) and xs[side] == 0


def test_frequencies_and_table_layout():
    freqs = rope_frequencies(64, 10000.0)
    assert freqs.shape == (16,) and freqs[0] == 1.0
    assert freqs[1].item() == pytest.approx(10000 ** (-4 / 64))
    table = normalized_rope_table((1, 3), 64, 10000.0, N)  # 1 + 9 positions
    assert table.shape == (10, 32) and table.dtype == torch.complex64
    assert torch.allclose(table.abs(), torch.ones(10, 32))
    # position 5 of the 3x3 map = row 1, column 2: x = 64, y = 32
    angles = table[1 + 5].angle()
    expected = torch.cat((64 * freqs, 32 * freqs))
    wrapped = torch.remainder(angles - expected + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 1e-4


def test_same_place_at_two_scales_gets_the_same_rotation():
    table = normalized_rope_table((3, 5), 64, 10000.0, N)
    centre_3, centre_5 = 4, 9 + 12  # (1, 1) of 3x3 and (2, 2) of 5x5
    assert torch.allclose(table[centre_3], table[centre_5])
    corner_3, corner_5 = 8, 9 + 24
    assert torch.allclose(table[corner_3], table[corner_5])


def test_q_dot_k_depends_only_on_position_differences_within_a_scale():
    side = 5
    table = normalized_rope_table((side,), 64, 10000.0, N)
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 64, generator=generator).expand(1, 1, side * side, 64)
    k = torch.randn(1, 1, 1, 64, generator=generator).expand(1, 1, side * side, 64)
    q_rot, k_rot = apply_rope(q, table), apply_rope(k, table)
    score = (q_rot[0, 0] @ k_rot[0, 0].T).double()  # (25, 25)

    def at(row, col):
        return row * side + col

    # the same offset (+1 row, +2 columns) from two different places gives the same score
    assert score[at(0, 0), at(1, 2)] == pytest.approx(score[at(2, 1), at(3, 3)].item(), abs=1e-4)
    assert score[at(1, 1), at(1, 1)] == pytest.approx(score[at(4, 4), at(4, 4)].item(), abs=1e-4)
    # and a different offset gives a different score
    assert abs(score[at(0, 0), at(1, 2)] - score[at(0, 0), at(2, 1)]) > 1e-3


def test_rotation_preserves_norms_and_dtype():
    table = normalized_rope_table((1, 2, 4), 64, 10000.0, N)
    x = torch.randn(2, 3, 21, 64, dtype=torch.bfloat16)
    out = apply_rope(x, table)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    assert torch.allclose(out.float().norm(dim=-1), x.float().norm(dim=-1), rtol=2e-2)


def test_head_dim_must_be_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        rope_frequencies(62, 10000.0)
