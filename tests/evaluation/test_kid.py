"""Kernel Inception Distance: the unbiased polynomial-kernel MMD² in subsets."""

import numpy as np
import pytest

from nextscale.evaluation.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def _mmd2_by_loops(x, y):
    """The estimator written out term by term (m = n)."""
    m, dim = x.shape

    def k(a, b):
        return (a @ b / dim + 1.0) ** 3

    within_x = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    within_y = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return within_x + within_y - 2 * cross


def test_kernel_and_estimator_match_the_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.0, size=(12, 5))
    assert polynomial_kernel(x, y)[3, 7] == pytest.approx((x[3] @ y[7] / 5 + 1) ** 3)
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)
    # one subset holding every point: the subset draw is a permutation, which the estimator ignores
    full = kernel_inception_distance(x, y, num_subsets=1, subset_size=12)
    assert full.mean == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12) and full.std == 0.0


def test_identical_sets_are_near_zero_and_different_sets_clearly_positive():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(400, 16))
    same = kernel_inception_distance(features, features, num_subsets=50, subset_size=200)
    other = kernel_inception_distance(features, rng.normal(size=(400, 16)), num_subsets=50, subset_size=200)
    shifted = kernel_inception_distance(features, features + 0.5, num_subsets=50, subset_size=200)
    assert abs(other.mean) < 0.01  # two independent samples of one distribution: the unbiased estimate ~ 0
    # a set against itself: points drawn into both subsets add k(x, x) to the cross term, so slightly below 0
    assert -0.05 < same.mean <= 0
    assert shifted.mean > 0.5 and shifted.mean > 20 * abs(same.mean)


def test_subsets_are_seeded_and_capped_at_the_smaller_set():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(30, 4)), rng.normal(0.2, 1.0, size=(20, 4))
    assert kernel_inception_distance(real, fake, seed=3) == kernel_inception_distance(real, fake, seed=3)
    assert kernel_inception_distance(real, fake, seed=3) != kernel_inception_distance(real, fake, seed=4)
    with pytest.raises(ValueError, match="at least 2 points"):
        kernel_inception_distance(real, fake[:1])
    with pytest.raises(ValueError, match="one extractor"):
        kernel_inception_distance(real, rng.normal(size=(20, 5)))
