import numpy as np
import pytest
import torch

from nextscale.evaluation.features import compute_features, compute_stats
from nextscale.evaluation.fid import FeatureStats, StatsAccumulator, fid_from_features, fid_from_stats, frechet_distance


def _random_extractor(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()
    ).eval()


def test_identical_statistics_give_zero():
    features = np.random.default_rng(0).normal(size=(200, 16))
    assert abs(fid_from_features(features, features)) <= 1e-6


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_singular_covariances_are_handled():
    mu = np.zeros(3)
    singular = np.diag([1.0, 0.0, 0.0])
    assert frechet_distance(mu, singular, mu + 1, singular) == pytest.approx(3.0, abs=1e-5)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="same feature extractor"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_accumulator_equals_one_shot():
    features = np.random.default_rng(2).normal(3.0, 2.0, size=(101, 7))
    accumulator = StatsAccumulator()
    for chunk in np.array_split(features, [5, 6, 40, 77]):
        accumulator.update(chunk)
    streamed, direct = accumulator.finalize(), FeatureStats.from_features(features)
    assert streamed.count == direct.count == 101
    np.testing.assert_allclose(streamed.mean, direct.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.cov, direct.cov, rtol=1e-10, atol=1e-12)


def test_stats_save_load_round_trip(tmp_path):
    stats = FeatureStats.from_features(np.random.default_rng(3).normal(size=(20, 4)))
    stats.save(tmp_path / "ref.npz")
    loaded = FeatureStats.load(tmp_path / "ref.npz")
    assert loaded.count == 20
    assert np.array_equal(loaded.mean, stats.mean) and np.array_equal(loaded.cov, stats.cov)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.npz"):
        FeatureStats.load(tmp_path / "bad.npz")


def test_compute_stats_with_injected_extractor():
    extractor = _random_extractor()
    images = torch.rand(24, 1, 16, 16) * 2 - 1
    batches = [(chunk, torch.zeros(len(chunk))) for chunk in images.split(5)]
    features = compute_features(extractor, batches, progress=False)
    assert features.shape == (24, 16)
    stats = compute_stats(extractor, images.split(5), progress=False)
    direct = FeatureStats.from_features(features)
    np.testing.assert_allclose(stats.cov, direct.cov, rtol=1e-9, atol=1e-12)
    assert abs(fid_from_stats(stats, direct)) <= 1e-6
    assert compute_features(extractor, images.split(5), progress=False, max_images=7).shape == (7, 16)


def test_fid_separates_shifted_images():
    extractor = _random_extractor()
    real = torch.rand(64, 3, 16, 16) * 2 - 1
    near = real.flip(0) + 0.01
    far = real * 0.2 + 0.5

    def fid(b):
        return fid_from_features(*(compute_features(extractor, [x], progress=False) for x in (real, b)))

    assert fid(near) < fid(far)


def test_non_finite_features_are_one_clear_error():
    """NaN features (images that overflowed) once made SciPy's sqrtm fail with "Internal error ... -102"."""
    from nextscale.cli.evaluate_scores import distances

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    fake[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values"):
        fid_from_features(real, fake)
    with pytest.raises(ValueError, match="1 of the 10 sample images have NaN or infinite features"):
        distances(real, fake)


def test_a_covariance_that_is_not_positive_semidefinite_is_one_clear_error():
    # A damaged or hand-made statistics file: the square root of its product would be complex.
    broken = np.diag([1.0, -0.5, 0.2])
    with pytest.raises(ValueError, match="first covariance is not positive semi-definite"):
        frechet_distance(np.zeros(3), broken, np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="second covariance is not positive semi-definite"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), broken)


def test_matches_scipys_matrix_square_root_at_full_rank_and_when_singular():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    for count in (400, 24):  # more samples than the 32 dimensions, and fewer (singular covariances)
        mix = rng.normal(size=(32, 32))
        a = FeatureStats.from_features(np.maximum(rng.normal(size=(count, 32)) @ mix, 0))
        b = FeatureStats.from_features(np.maximum(rng.normal(size=(count, 32)) @ mix * 1.1 + 0.3, 0))
        covmean = scipy_linalg.sqrtm(a.cov @ b.cov).real
        diff = a.mean - b.mean
        expected = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean)
        assert fid_from_stats(a, b) == pytest.approx(expected, rel=1e-6), count
