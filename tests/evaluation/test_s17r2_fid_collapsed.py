"""FID of two sets that vary in different feature directions (a collapsed generator whose few changes lie where the
reference never varies): the product sigma1^(1/2) sigma2 sigma1^(1/2) is ~0, so its rounding is all there is, and
judged against its own largest eigenvalue that rounding was called a broken covariance."""

import numpy as np
import pytest

from nextscale.evaluation.fid import frechet_distance


def test_sets_varying_in_different_directions_are_no_error():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    reference = basis[:, :8] @ np.diag(rng.random(8) + 1) @ basis[:, :8].T
    collapsed = basis[:, 8:] @ np.diag(rng.random(8) + 1) @ basis[:, 8:].T
    reference, collapsed = (reference + reference.T) / 2, (collapsed + collapsed.T) / 2
    # no shared direction: tr((S1 S2)^1/2) = 0, so FID = tr S1 + tr S2
    expected = np.trace(reference) + np.trace(collapsed)
    distance = frechet_distance(np.zeros(16), reference, np.zeros(16), collapsed)
    assert distance == pytest.approx(expected, rel=1e-6)  # the square roots of rounding add ~1e-8


def test_a_broken_second_covariance_is_still_refused_when_the_first_is_small():
    broken = np.diag([1.0, -0.5, 0.2])
    with pytest.raises(ValueError, match="second covariance is not positive semi-definite"):
        frechet_distance(np.zeros(3), np.eye(3) * 1e-3, np.zeros(3), broken)
