"""Power laws L = (β·X)^α fitted by least squares in log space, the same law above an irreducible loss
(L = L_inf + (β·X)^α), and the Pareto frontier of loss vs compute.

Taking logs makes the law a line: log L = α log β + α log X. An ordinary least-squares fit of log L on log X
gives the slope α and the intercept a = α log β, so β = exp(a / α). The Pearson correlation r of (log X, log L)
says how straight the points lie (VAR reports r ≈ -0.99 for loss vs parameters).

Worked example: L = (2·X)^-0.5 at X = 1, 8 gives L = 0.707, 0.25; the log-log slope is
(log 0.25 - log 0.707) / log 8 = -0.5 = α and the intercept is -0.5 log 2, so β = exp(-0.5 log 2 / -0.5) = 2.

The fit also gives the standard error of α and its 95 % confidence interval (Student's t with n - 2 degrees of
freedom; see ``uncertainty``, with a worked example and what the interval assumes). Two points give none: the line
passes through both. The frontier fit is the same OLS on the frontier points (its interval is conditional on
which points are on the frontier); the law with an irreducible term has no interval (see its fit).

The irreducible term: a model family trained on finite data levels off at the entropy of the data (and below
convergence, at what that much training allows), so log L against log X bends; Henighan et al. 2020 fit
L = L_inf + (β·X)^α. It is fitted by least squares in log L, like the plain law, over L_inf in [0, min L) and
the line's two parameters together: given L_inf the rest is nearly a line in logs (of L - L_inf), which gives
starting points, and Levenberg-Marquardt takes them to the joint optimum. It needs 4 distinct sizes: through 3
it passes exactly, whatever the data. The plain law is the floored law with L_inf = 0, so the floored law's
residual is never larger; ``compare_nested_fits`` judges the extra parameter by its degrees of freedom (an F-test
for nested least-squares models, and AIC), not by the raw residuals.

References: Henighan et al. 2020, "Scaling Laws for Autoregressive Generative Modeling" (arXiv:2010.14701);
Kaplan et al. 2020, "Scaling Laws for Neural Language Models" (arXiv:2001.08361); Tian et al. 2024,
"Visual Autoregressive Modeling" (arXiv:2404.02905), §5.2, Fig. 5 and 6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nextscale.scaling.uncertainty import (
    CONFIDENCE,
    confidence_interval,
    slope_standard_error,
    student_t_two_sided,
)

# Fewest distinct sizes for L = L_inf + (β·X)^α: three parameters pass through any three points (no degrees of
# freedom left to judge the fit by), so a fourth is the least that can say anything.
MIN_SATURATING_SIZES = 4
SIGNIFICANCE = 0.05  # the floor counts as supported when the F-test's p-value is below this
EXACT_LOG_RESIDUAL = 1e-9  # a log-loss residual below this is rounding (losses are measured to far fewer digits)


@dataclass(frozen=True)
class PowerLawFit:
    """L = (beta · X)^alpha; ``pearson_r`` of (log X, log L) over ``num_points`` points; ``alpha_stderr`` the
    OLS standard error of alpha in log space (None for 2 points, which leave no degrees of freedom)."""

    alpha: float
    beta: float
    pearson_r: float
    num_points: int
    alpha_stderr: float | None

    @property
    def degrees_of_freedom(self) -> int:
        """n - 2: the points less the two parameters of the line."""
        return self.num_points - 2

    def alpha_interval(self, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
        """The ``confidence`` interval of alpha (t distribution, n - 2 degrees of freedom); None for 2 points."""
        if self.alpha_stderr is None:
            return None
        return confidence_interval(self.alpha, self.alpha_stderr, self.degrees_of_freedom, confidence)

    def alpha_text(self) -> str:
        """E.g. ``alpha = -0.23 ± 0.012``, for legends; with 2 points ``alpha = -0.23 (no error from 2 points)``."""
        if self.alpha_stderr is None:
            return f"alpha = {self.alpha:.3g} (no error from {self.num_points} points)"
        return f"alpha = {self.alpha:.3g} ± {self.alpha_stderr:.2g}"

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        """The fitted law at ``x``."""
        with np.errstate(over="ignore", under="ignore"):  # far outside the fitted range inf / 0 is the answer
            return (self.beta * np.asarray(x, dtype=np.float64)) ** self.alpha

    def formula(self, x_name: str = "X", y_name: str = "L") -> str:
        """E.g. ``L = (2.0e-05·N)^-0.23``."""
        return f"{y_name} = ({self.beta:.3g}·{x_name})^{self.alpha:.3g}"


def _positive(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a list of numbers, got shape {array.shape}")
    if not np.isfinite(array).all() or (array <= 0).any():
        bad = array[~(np.isfinite(array) & (array > 0))]
        raise ValueError(f"a power law needs positive, finite {name} values (logs are taken); got {bad.tolist()}")
    return array


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLawFit:
    """Fit y = (β·x)^α by least squares on (log x, log y).

    Args:
        x: the scaled quantity (parameters N, compute C, ...), positive, at least two distinct values.
        y: the measured quantity (test loss, token error), positive, as many as ``x``.

    Returns:
        ``PowerLawFit(alpha, beta, pearson_r, num_points, alpha_stderr)``; ``alpha_interval()`` gives the 95 %
        confidence interval of alpha.

    Raises:
        ValueError: fewer than 2 points, different lengths, values <= 0, a single x value, a flat fit (α = 0) or
            one so nearly flat that β is out of floating-point range.
    """
    x, y = _positive(x, "x"), _positive(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError(f"a power-law fit needs at least 2 points, got {x.shape[0]}")
    log_x, log_y = np.log(x), np.log(y)
    if np.ptp(log_x) == 0:
        raise ValueError("all x values are equal; a fit needs at least two different x values")
    alpha, intercept = np.polyfit(log_x, log_y, 1)
    if np.ptp(log_y) == 0 or alpha == 0:
        raise ValueError("the fitted slope is exactly 0 (y does not change with x): β of L = (β·X)^α is undefined")
    # A slope near 0 puts β = exp(a / α) beyond float range; say so instead of numpy's overflow warning.
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        beta = float(np.exp(intercept / alpha))
        pearson = float(np.corrcoef(log_x, log_y)[0, 1])
    if not (math.isfinite(beta) and beta > 0 and math.isfinite(pearson)):
        raise ValueError(
            f"the fit is degenerate: y hardly changes with x (slope α = {alpha:.3g}), so β = exp(intercept / α) of "
            "L = (β·X)^α is out of floating-point range; fit points whose y clearly falls (or rises) with x "
            "(more distinct sizes, finished runs)"
        )
    stderr = slope_standard_error(log_x, log_y, float(alpha), float(intercept))
    return PowerLawFit(float(alpha), beta, pearson, int(x.shape[0]), stderr)


@dataclass(frozen=True)
class SaturatingFit:
    """L = irreducible + (beta · X)^alpha; ``rms_log_residual`` of log L over ``num_points`` points."""

    alpha: float
    beta: float
    irreducible: float
    rms_log_residual: float
    num_points: int

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):
            return self.irreducible + (self.beta * np.asarray(x, dtype=np.float64)) ** self.alpha

    def formula(self, x_name: str = "X", y_name: str = "L") -> str:
        """E.g. ``L = 1.9 + (2.0e-05·N)^-0.23``."""
        return f"{y_name} = {self.irreducible:.4g} + ({self.beta:.3g}·{x_name})^{self.alpha:.3g}"


def rms_log_residual(fit, x: Sequence[float], y: Sequence[float]) -> float:
    """Root-mean-square of log y - log fit(x): how far the points lie from a fitted law, in log units."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean((np.log(y) - np.log(fit(np.asarray(x, dtype=np.float64)))) ** 2)))


def fit_saturating_power_law(x: Sequence[float], y: Sequence[float], grid: int = 4000) -> SaturatingFit:
    """Fit y = L_inf + (β·x)^α by least squares in log y: the L_inf in [0, min y), intercept a = α log β and α
    that minimise sum_i (log y_i - log(L_inf + exp(a + α log x_i)))^2.

    Method: a profile over a grid of L_inf in [0, min y) (for each, the log-log line through (x, y - L_inf))
    gives starting points, its best few and L_inf = 0; from each, Levenberg-Marquardt refines all three
    parameters jointly (L_inf held in its bounds), and the lowest objective is kept. The profile alone is not
    the optimum: its line is fitted to log(y - L_inf), not to log y.

    No standard error is given: with three parameters from a handful of points the objective is far from
    quadratic in L_inf, so the linearised (Jacobian) error of alpha would be unreliable.

    Args:
        x: the scaled quantity, positive, at least ``MIN_SATURATING_SIZES`` (4) distinct values (three parameters
            and at least one degree of freedom).
        y: the measured quantity, positive, falling with x (a rising y has no floor to level off at).
        grid: candidate values of L_inf in the profile that starts the joint fit, at least 2.

    Raises:
        ValueError: fewer than 4 distinct x values, bad values (as ``fit_power_law``), y not falling with x,
            ``grid`` < 2, or a law so flat that β = exp(a / α) is out of floating-point range.
    """
    x, y = _positive(x, "x"), _positive(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if np.unique(x).shape[0] < MIN_SATURATING_SIZES:
        raise ValueError(
            f"a fit with an irreducible term has 3 parameters and needs {MIN_SATURATING_SIZES} distinct x values "
            f"(through 3 it passes exactly, leaving nothing to judge it by), got {np.unique(x).shape[0]} (of "
            f"{x.shape[0]} points): train more sizes (`nextscale scaling run --depths ...`) or fit without "
            "--irreducible"
        )
    if grid < 2:
        raise ValueError(f"grid must be at least 2 candidate values of L_inf, got {grid}")
    log_x, log_y = np.log(x), np.log(y)
    if np.polyfit(log_x, log_y, 1)[0] >= 0:
        raise ValueError(
            "y does not fall with x, so there is no floor for it to level off at; fit without --irreducible"
        )
    # Internally L_inf = fraction · min y (one scale for every data set) and log x is centred (a well-conditioned
    # intercept); the upper bound keeps L_inf strictly below min y, as the law requires.
    y_min, mean_log_x = float(y.min()), float(log_x.mean())
    problem = _LogResiduals(log_x - mean_log_x, log_y, y_min)
    best = min((_levenberg_marquardt(problem, start) for start in _profile_starts(problem, grid)), key=problem.cost)
    fraction, centred_intercept, alpha = (float(value) for value in best)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        beta = float(np.exp((centred_intercept - alpha * mean_log_x) / alpha)) if alpha != 0 else math.nan
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(
            f"the fit is degenerate: the part above L_inf hardly changes with x (α = {alpha:.3g}), so β of "
            "L = L_inf + (β·X)^α is out of floating-point range; fit without --irreducible, or more distinct sizes"
        )
    fit = SaturatingFit(alpha, beta, fraction * y_min, 0.0, int(x.shape[0]))
    return SaturatingFit(alpha, beta, fraction * y_min, rms_log_residual(fit, x, y), int(x.shape[0]))


@dataclass(frozen=True)
class NestedComparison:
    """The plain law (2 parameters) against the law above a floor (3) on the same ``num_points`` points.

    ``f_statistic`` = ((RSS_plain - RSS_floor) / 1) / (RSS_floor / (n - 3)) with the residual sums of squares of
    log L, and ``p_value`` its upper tail under F(1, n - 3) = t_{n-3}²: the chance of so large a drop in the
    residual from one extra parameter if the plain law were true (log-normal independent residuals). L_inf = 0
    lies on the edge of the allowed floors, so the reference distribution is approximate there (it then errs on
    the side of a larger p). ``aic_*`` = n log(RSS / n) + 2 k with k = 2 and 3 parameters: lower is better.
    """

    num_points: int
    rss_plain: float
    rss_floor: float
    f_statistic: float
    p_value: float
    aic_plain: float
    aic_floor: float

    @property
    def degrees_of_freedom(self) -> int:
        """n - 3: the points less the floored law's three parameters (the F-test's denominator)."""
        return self.num_points - 3

    @property
    def floor_supported(self) -> bool:
        """The floor lowers the residual more than an extra parameter would by chance (p < ``SIGNIFICANCE``)."""
        return self.p_value < SIGNIFICANCE

    def text(self) -> str:
        """One line, e.g. ``F(1, 3) = 75.1, p = 0.0032: the floor is supported (AIC -58.2 vs -40.9)``."""
        verdict = "supported" if self.floor_supported else f"not supported (p >= {SIGNIFICANCE})"
        return (
            f"F(1, {self.degrees_of_freedom}) = {self.f_statistic:.3g}, p = {self.p_value:.2g}: the floor is "
            f"{verdict} (AIC {self.aic_floor:.1f} with L_inf vs {self.aic_plain:.1f} without; lower is better)"
        )


def compare_nested_fits(
    x: Sequence[float], y: Sequence[float], plain: PowerLawFit, floor: SaturatingFit
) -> NestedComparison:
    """F-test and AIC of ``floor`` (L_inf + (β·x)^α, 3 parameters) against ``plain`` ((β·x)^α, 2) on (x, y).

    Args:
        x, y: the points both laws were fitted to, at least 4 (one degree of freedom for the floored law).
        plain: ``fit_power_law(x, y)``.
        floor: ``fit_saturating_power_law(x, y)``.
    """
    x, y = _positive(x, "x"), _positive(y, "y")
    count = int(x.shape[0])
    if count < MIN_SATURATING_SIZES:
        raise ValueError(f"comparing the laws needs at least {MIN_SATURATING_SIZES} points, got {count}")
    # Residuals below rounding noise are no residual: an exact power law leaves both sums at ~1e-30, whose ratio
    # is noise, and read raw it "supported" a floor the data do not have.
    noise = count * EXACT_LOG_RESIDUAL**2
    rss_plain = max(count * rms_log_residual(plain, x, y) ** 2, noise)
    rss_floor = max(count * rms_log_residual(floor, x, y) ** 2, noise)
    dof = count - 3
    drop = max(rss_plain - rss_floor, 0.0)  # the floored law contains the plain one; rounding may not
    if rss_floor > noise or drop == 0:
        f_statistic = drop / (rss_floor / dof)
        p_value = 1.0 - student_t_two_sided(math.sqrt(f_statistic), dof)  # F(1, k) = t_k^2
    else:  # an exact fit of four or more points where the plain law misses: no residual left
        f_statistic, p_value = math.inf, 0.0
    aic_plain = count * math.log(rss_plain / count) + 2 * 2
    aic_floor = count * math.log(rss_floor / count) + 2 * 3
    return NestedComparison(count, rss_plain, rss_floor, f_statistic, p_value, aic_plain, aic_floor)


# Largest L_inf / min y: the floor stays strictly below the lowest point.
_MAX_FLOOR_FRACTION = 1 - 1e-12


@dataclass(frozen=True)
class _LogResiduals:
    """r_i = log y_i - log(f · y_min + exp(c + α · centred_log_x_i)) at parameters (f, c, α), and its Jacobian."""

    centred_log_x: np.ndarray
    log_y: np.ndarray
    y_min: float

    def residuals(self, parameters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) residuals and (n, 3) Jacobian d r / d (f, c, α); inf or NaN where a trial step overflows."""
        fraction, intercept, alpha = parameters
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            reducible = np.exp(intercept + alpha * self.centred_log_x)
            predicted = fraction * self.y_min + reducible
            residuals = self.log_y - np.log(predicted)
            share = reducible / predicted  # d log(predicted) / d c
            jacobian = -np.stack([self.y_min / predicted, share, share * self.centred_log_x], axis=1)
        return residuals, jacobian

    def cost(self, parameters: np.ndarray) -> float:
        """Sum of squared residuals; inf where the law cannot be evaluated."""
        residuals, _ = self.residuals(parameters)
        cost = float(residuals @ residuals)
        return cost if math.isfinite(cost) else math.inf


def _profile_starts(problem: _LogResiduals, grid: int, count: int = 3) -> list[np.ndarray]:
    """Starting points (f, c, α): L_inf = 0 and the ``count`` best local minima of the profile, where each floor
    f on a grid over [0, 1) gets the OLS line of log(y - f · y_min) on centred log x."""
    fractions = np.linspace(0.0, 1.0, grid, endpoint=False)
    centred = problem.centred_log_x
    log_reducible = np.log(np.exp(problem.log_y)[None, :] - fractions[:, None] * problem.y_min)  # (grid, n)
    intercepts = log_reducible.mean(axis=1)
    slopes = (log_reducible - intercepts[:, None]) @ centred / (centred @ centred)
    with np.errstate(over="ignore", under="ignore"):
        predicted = fractions[:, None] * problem.y_min + np.exp(intercepts[:, None] + slopes[:, None] * centred)
        errors = np.sum((problem.log_y[None, :] - np.log(predicted)) ** 2, axis=1)
    padded = np.concatenate([[np.inf], errors, [np.inf]])
    local_minima = np.flatnonzero((errors <= padded[:-2]) & (errors <= padded[2:]))
    chosen = [0, *local_minima[np.argsort(errors[local_minima])][:count].tolist()]
    return [np.array([fractions[index], intercepts[index], slopes[index]]) for index in dict.fromkeys(chosen)]


def _levenberg_marquardt(problem: _LogResiduals, start: np.ndarray, max_steps: int = 200) -> np.ndarray:
    """Minimise ``problem.cost`` from ``start`` with f held in [0, _MAX_FLOOR_FRACTION].

    Each step solves (JᵀJ + λ·diag(JᵀJ)) δ = -Jᵀr (Marquardt's scaling), is clipped into the bounds and is kept only
    if the cost falls; λ shrinks after a kept step and grows after a refused one. When f sits on a bound and the
    gradient pushes it outwards, f is held and only (c, α) move (the step of the problem with f fixed). Stops when
    no damping gives a lower cost (the optimum to rounding) or after ``max_steps`` kept steps.
    """
    parameters = start.astype(np.float64)
    residuals, jacobian = problem.residuals(parameters)
    cost, damping = float(residuals @ residuals), 1e-3
    for _ in range(max_steps):
        gradient = jacobian.T @ residuals  # half the gradient of the cost
        free = np.ones(3, dtype=bool)
        at_lower = parameters[0] <= 0.0 and gradient[0] > 0
        at_upper = parameters[0] >= _MAX_FLOOR_FRACTION and gradient[0] < 0
        free[0] = not (at_lower or at_upper)
        normal = jacobian[:, free].T @ jacobian[:, free]
        scale = np.diag(normal) + 1e-30 * max(float(np.max(np.diag(normal))), 1e-300)
        while damping < 1e12:
            try:
                step = np.linalg.solve(normal + damping * np.diag(scale), -gradient[free])
            except np.linalg.LinAlgError:
                damping *= 10
                continue
            trial = parameters.copy()
            trial[free] += step
            trial[0] = min(max(trial[0], 0.0), _MAX_FLOOR_FRACTION)
            trial_residuals, trial_jacobian = problem.residuals(trial)
            trial_cost = float(trial_residuals @ trial_residuals)
            if trial_cost < cost:  # NaN and inf compare False: an overflowing step is refused
                break
            damping *= 10
        else:  # no damping lowers the cost: converged
            return parameters
        parameters, residuals, jacobian, cost = trial, trial_residuals, trial_jacobian, trial_cost
        damping = max(damping / 10, 1e-15)
    return parameters


def fit_pareto_frontier(compute: Sequence[float], loss: Sequence[float]) -> PowerLawFit:
    """Fit L = (β·C)^α to the Pareto frontier of (compute, loss) points: the VAR paper's Fig. 6 law.

    Args:
        compute: (P,) training compute of each point, positive (every held-out evaluation of every run, or one
            final point per run).
        loss: (P,) held-out loss at that point, positive.

    Returns:
        The fit over the frontier points only (``num_points`` says how many were on it). Its ``alpha_stderr`` is
        the OLS one of those points, conditional on their selection: frontier points are the lowest losses and
        several come from one run's curve, so read it as a lower bound on the uncertainty.

    Raises:
        ValueError: bad values (as ``fit_power_law``), or fewer than 2 points on the frontier.
    """
    compute, loss = _positive(compute, "compute"), _positive(loss, "loss")
    frontier = pareto_frontier(compute, loss)
    if len(frontier) < 2:
        raise ValueError(
            f"the compute Pareto frontier has {len(frontier)} point, and a fit needs 2: more compute never gave a "
            "lower loss here (evaluate more often, or train more runs)"
        )
    return fit_power_law(compute[frontier], loss[frontier])


def pareto_frontier(compute: Sequence[float], loss: Sequence[float]) -> np.ndarray:
    """Indices of the points no other point beats with less or equal compute, in order of compute.

    A point is on the frontier when its loss is strictly below the loss of every point with less compute
    (and, among equal compute, it has the least loss). Worked example: compute (1, 2, 3, 4), loss
    (5, 6, 4, 4) -> indices (0, 2): point 1 costs more than point 0 and is worse; point 3 costs more than
    point 2 and is no better.

    Args:
        compute: (P,) training compute of each point (e.g. every held-out evaluation of every run).
        loss: (P,) loss at that point.

    Returns:
        int64 indices into the inputs, sorted by compute.
    """
    compute = np.asarray(compute, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if compute.shape != loss.shape or compute.ndim != 1:
        raise ValueError(f"compute and loss must be two lists of one length, got {compute.shape} and {loss.shape}")
    order = np.lexsort((loss, compute))  # by compute, ties by loss
    frontier, best = [], np.inf
    for index in order:
        if loss[index] < best:
            frontier.append(index)
            best = loss[index]
    return np.asarray(frontier, dtype=np.int64)
