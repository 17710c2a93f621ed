"""How sure a fitted exponent is: the standard error of a least-squares slope, its Student-t confidence interval,
and the spread of a metric across the seeds of one depth.

A power law L = (β·X)^α is a line in logs, log L = α log X + a, fitted by ordinary least squares (OLS). With n
points (u_i, v_i) = (log X_i, log L_i), fitted values v̂_i and S_uu = Σ (u_i - ū)², the textbook standard error of
the slope is

    se(α) = sqrt( s² / S_uu ),   s² = Σ (v_i - v̂_i)² / (n - 2),

and, for independent residuals of one normal distribution in log space, (α̂ - α) / se(α) follows Student's t with
n - 2 degrees of freedom, so α̂ ± t_{0.975, n-2} · se(α) covers the true α in 95 % of repeated sweeps. Two points
leave no degrees of freedom: the line passes through both and says nothing about its own error.

Worked example: u = (0, 1, 2, 3), v = (0, -1.1, -1.9, -3.0). Then ū = 1.5, S_uu = 5, Σ (u - ū)(v - v̄) = -4.9,
so α = -0.98 and a = -0.03; the residuals are (0.03, -0.09, 0.09, -0.03), s² = 0.018 / 2 = 0.009,
se(α) = sqrt(0.009 / 5) = 0.0424, t_{0.975, 2} = 4.303 and the 95 % interval is -0.98 ± 0.183 = [-1.163, -0.797].

What the interval assumes, and where it says too little:
    * Several seeds per depth: every seed's run is one point. Seeds differ in initialisation and data order, so
      their residuals are independent; but if the law itself misses a depth (a bend, an unconverged large
      model), all seeds of that depth miss together and the interval is too narrow.
    * The compute Pareto frontier: the frontier points are selected as the lowest losses and several come from
      one run's curve, so they are neither independent nor unselected; its interval is the OLS one, conditional
      on the selection, and best read as a lower bound on the uncertainty.
    * The law with an irreducible term (``fit_saturating_power_law``) gets no interval: it is a nonlinear fit of
      three parameters to a handful of points, far from quadratic in L_inf, so a linearised standard error of
      alpha would be unreliable.

The t quantile is computed here, without scipy (an optional extra): for integer degrees of freedom ν the
two-sided probability P(|T| <= t) has a closed form (Abramowitz & Stegun 26.7.3 and 26.7.4), which is inverted by
bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of the reported interval
_QUANTILE_TOLERANCE = 1e-12  # relative width at which the bisection for a t quantile stops


def slope_standard_error(u: np.ndarray, v: np.ndarray, slope: float, intercept: float) -> float | None:
    """se(slope) of the OLS line v = slope·u + intercept through (u, v); None for 2 points (no degrees of freedom).

    Args:
        u: (n,) abscissae, at least two distinct values.
        v: (n,) ordinates.
        slope, intercept: the least-squares line of (u, v).
    """
    dof = u.shape[0] - 2
    if dof < 1:
        return None
    residuals = v - (slope * u + intercept)
    spread_u = float(np.sum((u - u.mean()) ** 2))
    return math.sqrt(float(np.sum(residuals**2)) / dof / spread_u)


def student_t_two_sided(t: float, dof: int) -> float:
    """P(|T| <= t) for Student's t with ``dof`` (integer) degrees of freedom (Abramowitz & Stegun 26.7.3/4).

    With θ = atan(t / sqrt(ν)): for odd ν, (2/π)(θ + sin θ (cos θ + 2/3 cos³θ + ... + (2·4···(ν-3)) /
    (1·3···(ν-2)) cos^(ν-2) θ)), the sum empty for ν = 1; for even ν, sin θ (1 + 1/2 cos²θ + ... +
    (1·3···(ν-3)) / (2·4···(ν-2)) cos^(ν-2) θ). Every term is positive, so the sum is accurate for any ν.
    """
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"the t distribution here takes a whole number of degrees of freedom >= 1, got {dof}")
    theta = math.atan(abs(t) / math.sqrt(dof))
    sine, cosine = math.sin(theta), math.cos(theta)
    if dof % 2:
        term = total = cosine if dof > 1 else 0.0
        for k in range(3, dof - 1, 2):
            term *= cosine * cosine * (k - 1) / k
            total += term
        return 2 / math.pi * (theta + sine * total)
    term = total = 1.0
    for k in range(2, dof - 1, 2):
        term *= cosine * cosine * (k - 1) / k
        total += term
    return sine * total


def student_t_quantile(confidence: float, dof: int) -> float:
    """The t > 0 with P(|T| <= t) = ``confidence``: e.g. 12.706 (1 degree of freedom), 4.303 (2), 2.228 (10)
    for 0.95, tending to the normal 1.960."""
    if not 0 < confidence < 1:
        raise ValueError(f"a confidence level is between 0 and 1 (0.95 for 95 %), got {confidence}")
    low, high = 0.0, 1.0
    while student_t_two_sided(high, dof) < confidence:  # the probability rises with t: bracket, then bisect
        low, high = high, 2 * high
    while high - low > _QUANTILE_TOLERANCE * high:
        middle = (low + high) / 2
        if student_t_two_sided(middle, dof) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def confidence_interval(
    estimate: float, standard_error: float, dof: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """estimate ± t_{(1 + confidence) / 2, dof} · standard_error."""
    half_width = student_t_quantile(confidence, dof) * standard_error
    return estimate - half_width, estimate + half_width


@dataclass(frozen=True)
class GroupSpread:
    """The points of one depth (or one x value): how many, their x, and the mean and sample standard deviation
    (n - 1 in the denominator; None for a single point) of the measured metric."""

    key: float
    x: float
    num_points: int
    mean: float
    std: float | None


def spread_by_group(keys: Sequence[float], x: Sequence[float], y: Sequence[float]) -> list[GroupSpread]:
    """Mean ± std of ``y`` over the points that share a key (a depth: its seeds), in order of key.

    Worked example: keys (1, 1, 2), x (10, 10, 40), y (3.0, 3.2, 2.5) -> depth 1: x 10, 2 points, 3.1 ± 0.141;
    depth 2: x 40, 1 point, 2.5 (std None).
    """
    keys, x, y = (np.asarray(values, dtype=np.float64) for values in (keys, x, y))
    groups = []
    for key in np.unique(keys):
        members = keys == key
        values = y[members]
        std = float(np.std(values, ddof=1)) if values.shape[0] > 1 else None
        mean_x, count = float(x[members].mean()), int(values.shape[0])
        groups.append(GroupSpread(float(key), mean_x, count, float(values.mean()), std))
    return groups
