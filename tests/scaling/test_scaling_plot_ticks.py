"""The scaling figure's x tick labels on an axis spanning one to two decades: matplotlib labelled 2, 3, 4 and 6 x 10^k
there, and "3×10⁵4×10⁵" ran together (s18 h6, a sweep of depths 1-3). The labels it would draw are checked, not
pixels."""

import math

import pytest


def _drawn_x_labels(axis) -> list[tuple[float, str]]:
    low, high = axis.get_xlim()
    labels = axis.get_xticklabels(which="both")
    return sorted(
        (label.get_position()[0], label.get_text())
        for label in labels
        if label.get_text() and low <= label.get_position()[0] <= high
    )


def test_an_axis_of_one_to_two_decades_labels_one_two_five_only():
    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import draw_scaling

    rows = [{"params": n, "compute": 6e6 * n, "loss": 2 + (1e-5 * n) ** -0.3} for n in (43169, 201412, 585833)]
    figure = draw_scaling(rows)
    figure.draw_without_rendering()
    for axis in figure.axes:
        drawn = _drawn_x_labels(axis)
        positions = [position for position, _ in drawn]
        assert len(drawn) >= 2, drawn
        mantissas = {round(position / 10 ** math.floor(math.log10(position)), 6) for position in positions}
        assert mantissas <= {1.0, 2.0, 5.0}, drawn
        gaps = [math.log10(b / a) for a, b in zip(positions, positions[1:])]
        assert min(gaps) >= math.log10(2) - 1e-9, drawn  # 3e5 and 4e5 were 0.12 decades apart
