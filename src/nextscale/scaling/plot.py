"""The scaling figure: log-log loss and token error vs parameters, and loss vs compute with its Pareto frontier.

Panels (as the VAR paper's Fig. 5 and 6):
    1. held-out loss vs N: L_avg and L_last of every run's last evaluation, each with its fitted power law
       (formula, alpha ± its standard error and Pearson r in the legend). With several runs per depth (seeds),
       every run is a faint point, each depth's mean is a marker with an error bar of the standard deviation
       across its seeds, and the law is fitted to every run's point (as `scaling fit`);
    2. token error vs N: Err_avg and Err_last the same way (when the table has them);
    3. loss vs training compute C: every evaluation of every run (one curve per run), the Pareto frontier over
       all of them (the least loss reached with at most that compute) and the power law fitted to the frontier.
       From a bare table (no curves) the panel shows the final points and their frontier.

A log axis spanning less than two decades labels only 1, 2 and 5 x 10^k (matplotlib's default labels 2, 3, 4 and
6 x 10^k there, and "3×10⁵4×10⁵" run into each other on a narrow panel); wider axes label the decades.

Matplotlib is the optional ``eval`` extra; it is imported when a figure is drawn, through its object API (no
pyplot state and no backend switch in the calling process).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nextscale.pretrained import atomic_write
from nextscale.scaling.power_law import (
    MIN_SATURATING_SIZES,
    PowerLawFit,
    SaturatingFit,
    compare_nested_fits,
    fit_pareto_frontier,
    fit_power_law,
    fit_saturating_power_law,
    pareto_frontier,
)
from nextscale.scaling.uncertainty import spread_by_group

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MIN_POINTS = 2  # a figure of one run has no law to show
# Log axes narrower than this ratio get labels at 1, 2, 5 x 10^k only (matplotlib labels 2, 3, 4, 6 x 10^k up to
# about two decades, which overlap); wider ones keep matplotlib's labels at the decades.
_LABEL_DECADES_BELOW = 100.0
SEED_POINT_ALPHA = 0.3  # each seed's own point, drawn faintly under its depth's mean


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("scaling plots need matplotlib: pip install 'nextscale[eval]'") from err
    return Figure


def _draw_points(
    axis, x: np.ndarray, y: np.ndarray, depths: np.ndarray | None, label: str, color: str, marker: str
) -> None:
    """One marker per run; with several runs of a depth (seeds) each run faintly and the depth's mean with an
    error bar of the standard deviation across its runs."""
    groups = spread_by_group(depths, x, y) if depths is not None else []
    if not any(group.num_points > 1 for group in groups):
        axis.scatter(x, y, color=color, marker=marker, zorder=3)
        return
    axis.scatter(x, y, color=color, marker=marker, alpha=SEED_POINT_ALPHA, zorder=2)
    spread = [0.0 if group.std is None else group.std for group in groups]
    axis.errorbar(
        [group.x for group in groups],
        [group.mean for group in groups],
        yerr=spread,
        color=color,
        marker=marker,
        linestyle="none",
        capsize=3,
        zorder=3,
        label=f"{label}: mean ± std over seeds",
    )


def _fit_and_draw(
    axis,
    x: np.ndarray,
    y: np.ndarray,
    depths: np.ndarray | None,
    label: str,
    x_name: str,
    color: str,
    marker: str,
    irreducible: bool = False,
) -> None:
    """The points (``_draw_points``), their power law (solid) and, with ``irreducible``, the law above a floor
    (dotted)."""
    _draw_points(axis, x, y, depths, label, color, marker)
    grid = np.geomspace(x.min(), x.max(), 50)
    try:
        fit = fit_power_law(x, y)
    except ValueError:  # equal sizes, a flat or degenerate fit: the points are still worth seeing
        axis.plot([], [], color=color, label=f"{label} (no power law fits these points)")
        return
    axis.plot(grid, fit(grid), color=color, label=fit_label(fit, x_name, label))
    if irreducible:
        try:
            floor = fit_saturating_power_law(x, y)
        except ValueError:  # fewer than 4 sizes, or a loss that does not fall: the straight law stands alone
            why = f"needs {MIN_SATURATING_SIZES} sizes" if np.unique(x).shape[0] < MIN_SATURATING_SIZES else "no fit"
            axis.plot([], [], color=color, linestyle=":", label=f"{label}: no law with a floor ({why})")
            return
        axis.plot(grid, floor(grid), color=color, linestyle=":", label=floor_label(floor, fit, x, y, x_name, label))


def floor_label(
    floor: SaturatingFit, plain: PowerLawFit, x: np.ndarray, y: np.ndarray, x_name: str, y_name: str
) -> str:
    """The legend of a law above a floor with the F-test against the plain law, e.g.
    ``L_avg = 2.16 + (1.5e-05·N)^-0.329; floor supported: F(1, 3) = 75, p = 0.0032``."""
    test = compare_nested_fits(x, y, plain, floor)
    verdict = "floor supported" if test.floor_supported else "floor not supported"
    return (
        f"{floor.formula(x_name, y_name)}; {verdict}: F(1, {test.degrees_of_freedom}) = {test.f_statistic:.3g}, "
        f"p = {test.p_value:.2g}"
    )


def fit_label(fit: PowerLawFit, x_name: str, y_name: str) -> str:
    """The legend of a fitted law: e.g. ``L_avg = (2e-05·N)^-0.23, alpha = -0.23 ± 0.012, r = -0.998``."""
    return f"{fit.formula(x_name, y_name)}, {fit.alpha_text()}, r = {fit.pearson_r:.3f}"


def _label_few_ticks(axis) -> None:
    """On log axes spanning less than two decades, label only the ticks at 1, 2 and 5 x 10^k (every integer
    multiple when that leaves fewer than two), at least log10(2) = 0.3 decades apart; wider axes keep matplotlib's
    labels at the decades."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    for scale_axis, limits in ((axis.xaxis, axis.get_xlim()), (axis.yaxis, axis.get_ylim())):
        low, high = sorted(limits)
        if scale_axis.get_scale() != "log" or low <= 0 or high / low >= _LABEL_DECADES_BELOW:
            continue
        for mantissas in ((1, 2, 5), tuple(range(1, 10))):
            decades = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
            if sum(low <= m * 10.0**k <= high for k in decades for m in mantissas) >= 2:
                break
        else:  # no two such ticks on the axis: matplotlib's own linear ticks read better
            continue
        scale_axis.set_major_locator(LogLocator(subs=[float(m) for m in mantissas]))
        # infinite minor_thresholds: label every tick the locator gives (the default thins them by span)
        scale_axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(math.inf,) * 2))
        scale_axis.set_minor_formatter(NullFormatter())


def plot_scaling(
    rows: Sequence[dict[str, float]],
    out: str | os.PathLike,
    curves: dict[str, Sequence[tuple[float, float]]] | None = None,
    title: str | None = None,
    irreducible: bool = False,
) -> Path:
    """Draw the scaling figure into a PNG (written atomically) and return its path.

    Args:
        rows: one dict per run with at least "params", "compute" and "loss"; optional "loss_last", "error",
            "error_last", and "depth" (several rows of one depth, the runs of its seeds, are drawn as their mean
            ± std over faint points).
        out: the PNG path.
        curves: optional {run name: [(compute, loss), ...]} of every held-out evaluation, for the frontier.
        title: figure title.
        irreducible: also draw the losses' laws above a floor, L = L_inf + (beta N)^alpha (dotted).

    Raises:
        ImportError: matplotlib is missing.
        ValueError: fewer than 2 rows, or a row misses params / compute / loss.
    """
    figure = draw_scaling(rows, curves, title, irreducible)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    return path


def draw_scaling(
    rows: Sequence[dict[str, float]],
    curves: dict[str, Sequence[tuple[float, float]]] | None = None,
    title: str | None = None,
    irreducible: bool = False,
) -> Figure:
    """The matplotlib Figure of ``plot_scaling`` (same arguments, no file)."""
    figure_class = _figure_class()
    if len(rows) < MIN_POINTS:
        raise ValueError(
            f"a scaling figure needs at least {MIN_POINTS} points (finished runs), got {len(rows)}: "
            "train more depths with `nextscale scaling run`"
        )
    for name in ("params", "compute", "loss"):
        if any(name not in row for row in rows):
            raise ValueError(f"every point needs a {name!r} value to be plotted")

    def values(name: str) -> np.ndarray | None:
        if not all(name in row for row in rows):
            return None
        return np.array([float(row[name]) for row in rows])

    params, depths = values("params"), values("depth")
    if not (np.isfinite(params).all() and (params > 0).all()):  # a log axis (and its fitted law's grid)
        raise ValueError(f"every point needs a positive, finite 'params' value (a log axis), got {params.tolist()}")
    has_error = values("error") is not None
    figure = figure_class(figsize=(6.0 * (3 if has_error else 2), 4.8))
    axes = figure.subplots(1, 3 if has_error else 2)
    loss_axis, compute_axis = axes[0], axes[-1]
    _fit_and_draw(loss_axis, params, values("loss"), depths, "L_avg", "N", "tab:blue", "o", irreducible)
    if values("loss_last") is not None:
        _fit_and_draw(loss_axis, params, values("loss_last"), depths, "L_last", "N", "tab:orange", "s", irreducible)
    loss_axis.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="held-out loss", title="loss vs size")
    if has_error:
        error_axis = axes[1]
        _fit_and_draw(error_axis, params, values("error"), depths, "Err_avg", "N", "tab:green", "o")
        if values("error_last") is not None:
            _fit_and_draw(error_axis, params, values("error_last"), depths, "Err_last", "N", "tab:red", "s")
        error_axis.set(xscale="log", yscale="log", xlabel="parameters N", ylabel="token error", title="error vs size")

    if curves:
        points = []
        # one colour and one legend entry per depth: a run "d4-seed1" joins "d4" (its seeds drawn alike)
        groups = {name: name.split("-seed")[0] for name in curves}
        colors = {group: f"C{index % 10}" for index, group in enumerate(dict.fromkeys(groups.values()))}
        sizes = {group: list(groups.values()).count(group) for group in colors}
        labelled: set[str] = set()
        for name, curve in curves.items():
            curve = [(c, l) for c, l in curve if c > 0 and l > 0]
            if curve:
                group = groups[name]
                label = None if group in labelled else group + (f" ({sizes[group]} seeds)" if sizes[group] > 1 else "")
                labelled.add(group)
                compute_axis.plot(*zip(*curve), marker=".", alpha=0.7, color=colors[group], label=label)
                points += curve
    else:
        points = list(zip(values("compute"), values("loss")))
        compute_axis.scatter(*zip(*points), color="tab:gray", label="final points")
    compute, loss = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    frontier = pareto_frontier(compute, loss)
    compute_axis.plot(compute[frontier], loss[frontier], color="black", linewidth=2, label="Pareto frontier")
    try:
        fit = fit_pareto_frontier(compute, loss)
    except ValueError:
        compute_axis.plot([], [], "k--", label="no power law fits the frontier")
    else:
        grid = np.geomspace(compute[frontier].min(), compute[frontier].max(), 50)
        compute_axis.plot(grid, fit(grid), "k--", label=fit_label(fit, "C", "L_avg"))
    compute_axis.set(
        xscale="log",
        yscale="log",
        xlabel="training compute C = 6 (N_token D + N_image I) (FLOPs)",
        ylabel="held-out loss L_avg",
        title="loss vs compute",
    )
    for axis in axes:
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
        _label_few_ticks(axis)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
