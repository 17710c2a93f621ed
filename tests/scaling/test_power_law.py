"""Power-law fits in log space and the Pareto frontier."""

import numpy as np
import pytest

from nextscale.scaling.power_law import (
    fit_power_law,
    fit_saturating_power_law,
    pareto_frontier,
    rms_log_residual,
)


def test_exact_power_law_is_recovered():
    x = np.geomspace(1e5, 1e9, 7)
    fit = fit_power_law(x, (2.5e-5 * x) ** -0.23)
    assert fit.alpha == pytest.approx(-0.23, rel=1e-10)
    assert fit.beta == pytest.approx(2.5e-5, rel=1e-8)
    assert fit.pearson_r == pytest.approx(-1.0, abs=1e-12)
    assert fit.num_points == 7
    np.testing.assert_allclose(fit(x), (2.5e-5 * x) ** -0.23, rtol=1e-9)


def test_worked_example_of_the_docstring():
    fit = fit_power_law([1.0, 8.0], [(2 * 1.0) ** -0.5, (2 * 8.0) ** -0.5])
    assert (fit.alpha, fit.beta) == (pytest.approx(-0.5), pytest.approx(2.0))


def test_noisy_power_law_is_recovered_closely():
    rng = np.random.default_rng(0)
    x = np.geomspace(1e4, 1e8, 40)
    y = (3e-3 * x) ** -0.15 * np.exp(rng.normal(0, 0.01, size=x.shape))  # 1 % multiplicative noise
    fit = fit_power_law(x, y)
    assert fit.alpha == pytest.approx(-0.15, abs=0.005)
    assert fit.beta == pytest.approx(3e-3, rel=0.5)  # β = exp(a / α) amplifies intercept noise by 1 / |α|
    assert -1.0 < fit.pearson_r < -0.99


def test_two_points_are_enough_and_growing_laws_work():
    fit = fit_power_law([10, 1000], [2.0, 20.0])
    assert fit.alpha == pytest.approx(0.5) and fit.pearson_r == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1.0], [1.0], "at least 2 points"),
        ([1.0, 2.0], [1.0, 0.0], "positive"),
        ([-1.0, 2.0], [1.0, 2.0], "positive"),
        ([1.0, 2.0], [1.0, float("nan")], "positive"),
        ([3.0, 3.0], [1.0, 2.0], "two different x"),
        ([1.0, 2.0], [5.0, 5.0], "slope is exactly 0"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "same length"),
    ],
)
def test_bad_points_are_clear_errors(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_law(x, y)


def test_pareto_frontier_of_a_hand_made_example():
    # (compute, loss); the frontier is the least loss reached so far, in order of compute
    compute = [4.0, 1.0, 2.0, 3.0, 8.0, 6.0, 6.0]
    loss = [4.0, 5.0, 6.0, 4.0, 1.0, 3.0, 2.0]
    # by compute: 1 (5) on, 2 (6) worse, 3 (4) on, 4 (4) not better, 6 (2) on, 6 (3) beaten at equal compute, 8 (1) on
    assert pareto_frontier(compute, loss).tolist() == [1, 3, 6, 4]
    assert pareto_frontier([1, 2, 3, 4], [5, 6, 4, 4]).tolist() == [0, 2]  # the docstring's example
    with pytest.raises(ValueError, match="one length"):
        pareto_frontier([1, 2], [1])


def test_a_law_that_levels_off_is_recovered_with_its_floor():
    x = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7])
    y = 1.5 + (2e-3 * x) ** -0.3
    fit = fit_saturating_power_law(x, y)
    assert fit.irreducible == pytest.approx(1.5, abs=1e-5)
    assert fit.alpha == pytest.approx(-0.3, abs=1e-4) and fit.beta == pytest.approx(2e-3, rel=1e-3)
    assert fit.rms_log_residual < 1e-6 and fit.num_points == 8
    np.testing.assert_allclose(fit(x), y, rtol=1e-6)
    plain = fit_power_law(x, y)
    assert rms_log_residual(plain, x, y) > 100 * fit.rms_log_residual  # a straight line in logs misses the bend
    assert fit.formula("N", "L") == "L = 1.5 + (0.002·N)^-0.3"


def test_a_straight_power_law_has_no_floor():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    fit = fit_saturating_power_law(x, (2.0 * x) ** -0.1)
    assert fit.irreducible == pytest.approx(0.0, abs=1e-3) and fit.alpha == pytest.approx(-0.1, abs=1e-3)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([1, 2], [3, 2], "needs 4 distinct x values"),
        ([1, 1, 2], [3, 2, 1], "needs 4 distinct x values"),
        ([1, 1, 2, 2], [3, 2.9, 2, 1.9], r"needs 4 distinct x values .*, got 2 \(of 4 points\)"),
        ([1, 2, 4], [3, 2, 1.5], r"3 parameters and needs 4 distinct x values \(through 3 it passes exactly"),
        ([1, 2, 4, 8], [1, 2, 3, 4], "y does not fall with x"),
        ([1, 2, 4], [3, 0, 1], "positive, finite y values"),
    ],
)
def test_saturating_fit_refuses_what_it_cannot_fit(x, y, message):
    with pytest.raises(ValueError, match=message):
        fit_saturating_power_law(x, y)
