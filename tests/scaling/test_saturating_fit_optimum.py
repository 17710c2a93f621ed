"""The law above a floor, L = L_inf + (β·X)^α, reaches the least squares of log L (checked against scipy)."""

import numpy as np
import pytest

from nextscale.scaling.power_law import fit_power_law, fit_saturating_power_law


def log_objective(x: np.ndarray, y: np.ndarray, floor: float, intercept: float, alpha: float) -> float:
    """sum_i (log y_i - log(L_inf + exp(a + α log x_i)))^2, the objective the fit minimises."""
    return float(np.sum((np.log(y) - np.log(floor + np.exp(intercept + alpha * np.log(x)))) ** 2))


def scipy_optimum(x: np.ndarray, y: np.ndarray, starts: list[tuple[float, float, float]]) -> float:
    """The least objective scipy's bounded least squares (L_inf in [0, min y]) reaches from any of ``starts``."""
    least_squares = pytest.importorskip("scipy.optimize").least_squares
    log_x, log_y, y_min = np.log(x), np.log(y), float(y.min())

    def residuals(parameters: np.ndarray) -> np.ndarray:
        return log_y - np.log(parameters[0] + np.exp(parameters[1] + parameters[2] * log_x))

    best = np.inf
    for floor, intercept, alpha in starts:
        floor = min(max(floor, 1e-12 * y_min), (1 - 1e-9) * y_min)  # trf starts strictly inside its bounds
        result = least_squares(
            residuals,
            [floor, intercept, alpha],
            bounds=([0.0, -np.inf, -np.inf], [y_min, np.inf, np.inf]),
            ftol=1e-12,
            xtol=1e-12,
            gtol=1e-12,
            max_nfev=100,
        )
        best = min(best, 2 * result.cost)  # scipy's cost is half the sum of squares
    return best


def noisy(x: np.ndarray, floor: float, beta: float, alpha: float, noise: float, seed: int) -> np.ndarray:
    return (floor + (beta * x) ** alpha) * np.exp(np.random.default_rng(seed).normal(0.0, noise, x.shape))


X8 = np.geomspace(1e4, 3e7, 8)
X_SWEEP = np.array([43169, 201412, 585833, 1307024, 4202084, 9771328], dtype=np.float64)
DATA_SETS = {
    "noisy": (X8, noisy(X8, 1.5, 2e-3, -0.3, 0.02, seed=0)),
    "floor near 0": (X8, noisy(X8, 0.002, 2e-3, -0.3, 0.01, seed=1)),
    "floor near min y": (X8, noisy(X8, 10.0, 5e-3, -0.8, 1e-3, seed=2)),
    "four points": (X8[[0, 2, 5, 7]], noisy(X8[[0, 2, 5, 7]], 0.2, 1e-2, -0.5, 0.03, seed=4)),
    # FID of the 1,200-step sweep (docs/reproduction/fid_fm1200_points.csv): the profile alone was 12 % above
    "sweep FID": (X_SWEEP, np.array([86.8652632, 29.1048614, 16.5861281, 11.3628525, 8.07, 7.97])),
}


@pytest.mark.parametrize("name", DATA_SETS)
def test_the_fit_reaches_scipys_optimum_of_its_objective(name):
    x, y = DATA_SETS[name]
    fit = fit_saturating_power_law(x, y)
    ours = log_objective(x, y, fit.irreducible, fit.alpha * np.log(fit.beta), fit.alpha)
    assert 0.0 <= fit.irreducible < y.min()
    assert fit.rms_log_residual == pytest.approx(np.sqrt(ours / x.shape[0]), rel=1e-9)
    # scipy from a spread of floors (each with its profile line) and from our own answer
    starts = [(fit.irreducible, fit.alpha * np.log(fit.beta), fit.alpha)]
    for fraction in (0.0, 0.5, 0.99):
        alpha, intercept = np.polyfit(np.log(x), np.log(y - fraction * y.min()), 1)
        starts.append((fraction * y.min(), intercept, alpha))
    assert ours <= scipy_optimum(x, y, starts) * (1 + 1e-6) + 1e-20


@pytest.mark.parametrize(
    ("x", "floor", "beta", "alpha"),
    [
        (np.geomspace(1e4, 3e7, 8), 1.5, 2e-3, -0.3),
        (np.geomspace(1e2, 1e6, 4), 0.7, 1e-1, -0.9),  # four points, three parameters: the fewest allowed
        (np.geomspace(1e3, 1e8, 6), 4.0, 1e-4, -0.5),  # the floor is 99.8 % of the lowest point
    ],
)
def test_an_exact_law_is_recovered_to_rounding(x, floor, beta, alpha):
    fit = fit_saturating_power_law(x, floor + (beta * x) ** alpha)
    assert fit.irreducible == pytest.approx(floor, rel=1e-7)
    assert fit.alpha == pytest.approx(alpha, rel=1e-7) and fit.beta == pytest.approx(beta, rel=1e-6)
    assert fit.rms_log_residual < 1e-10


def test_a_floor_at_zero_is_the_plain_least_squares_line():
    # noisy points of a law with no floor: the optimum sits on the bound L_inf = 0, where the objective is the
    # plain log-log OLS, so both fits agree
    x = np.geomspace(1e3, 1e7, 7)
    y = noisy(x, 0.0, 2.0, -0.1, 0.003, seed=5)
    fit, plain = fit_saturating_power_law(x, y), fit_power_law(x, y)
    assert fit.irreducible == 0.0
    assert fit.alpha == pytest.approx(plain.alpha, rel=1e-9) and fit.beta == pytest.approx(plain.beta, rel=1e-6)


def test_a_grid_below_two_values_is_refused():
    with pytest.raises(ValueError, match="grid must be at least 2"):
        fit_saturating_power_law([1, 2, 4, 8], [3, 2, 1.5, 1.3], grid=1)
