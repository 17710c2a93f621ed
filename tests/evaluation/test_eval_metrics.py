import numpy as np
import pytest
import torch

from nextscale.evaluation.inception import inception_score, resize_bilinear_legacy
from nextscale.evaluation.precision_recall import knn_radii, precision_recall


def test_identical_sets_are_perfect():
    points = np.random.default_rng(0).normal(size=(50, 4))
    assert precision_recall(points, points) == (1.0, 1.0)


def test_far_apart_sets_score_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 3))
    assert precision_recall(real, rng.normal(size=(30, 3)) + 100.0) == (0.0, 0.0)


def test_mode_collapse_keeps_precision_loses_recall():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 2))
    collapsed = real[np.linalg.norm(real - real[0], axis=1) < 0.5]  # one corner of the real cloud
    precision, recall = precision_recall(real, collapsed, chunk_size=64)
    assert precision == 1.0 and recall < 0.3


def test_knn_radius_excludes_the_point_itself():
    points = torch.tensor([[0.0], [1.0], [3.0], [6.0]], dtype=torch.float64)
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 6.0]


def test_inception_score_bounds():
    assert inception_score(torch.zeros(100, 10), splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)
    confident = torch.eye(10).repeat(10, 1) * 100  # every class equally often, each predicted with certainty
    mean, _ = inception_score(confident, splits=5)
    assert mean == pytest.approx(10.0, rel=1e-6)
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(5, 10), splits=10)


def test_legacy_bilinear_resize():
    image = torch.arange(4.0).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)
    resized = resize_bilinear_legacy(image, 8)
    # output x reads input x * 4 / 8; the last samples clamp at the right edge
    assert resized[0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]
    assert torch.equal(resize_bilinear_legacy(image, 4), image)
