"""Inputs the metrics must read right or refuse in one line: 8-bit pixels, non-finite features, and broken
statistics or feature-cache files."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.evaluation.features import cached_features, compute_features, iter_features
from nextscale.evaluation.fid import FeatureStats
from nextscale.evaluation.inception import InceptionExtractor
from nextscale.evaluation.kid import kernel_inception_distance
from nextscale.evaluation.precision_recall import precision_recall

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def _pixels(seed: int = 0, shape=(3, 3, 8, 8)) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_inception_reads_uint8_as_pixels_like_the_same_images_in_minus_one_to_one():
    extractor = InceptionExtractor(torch.nn.Linear(1, 1))  # preprocess only; no network runs
    pixels = _pixels()
    from_uint8 = extractor.preprocess(pixels)
    from_float = extractor.preprocess(pixels.float() / 127.5 - 1.0)
    torch.testing.assert_close(from_uint8, from_float, rtol=0, atol=1e-6)
    assert from_uint8.shape == (3, 3, 299, 299)
    assert from_uint8.min() >= -1.0 and from_uint8.max() <= 127.0 / 128.0  # the TF graph's (pixel - 128) / 128
    with pytest.raises(TypeError, match="int64"):
        extractor.preprocess(pixels.long())


def test_features_of_uint8_batches_equal_those_of_the_same_images_as_floats():
    def extractor(images):  # any extractor takes [-1, 1] floats
        assert images.is_floating_point() and images.min() >= -1 and images.max() <= 1
        return images.mean(dim=(2, 3))  # (B, 3)

    pixels = _pixels(1, (4, 1, 6, 6))
    from_uint8 = compute_features(extractor, [pixels], progress=False)
    from_float = compute_features(extractor, [pixels.float() / 127.5 - 1.0], progress=False)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-7)
    with pytest.raises(ValueError, match="int32"):
        compute_features(extractor, [pixels.int()], progress=False)


def test_precision_recall_and_kid_refuse_non_finite_features():
    real = np.random.default_rng(0).normal(size=(20, 4))
    fake = real + 0.1
    fake[3, 1] = np.nan  # a NaN distance is never inside a ball: precision would be a silent, wrong number
    with pytest.raises(ValueError, match="fake_features hold NaN"):
        precision_recall(real, fake)
    with pytest.raises(ValueError, match="NaN or infinite"):
        kernel_inception_distance(real, fake, num_subsets=2)


def _broken_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / "whole.npz"
    np.savez(whole, key=np.array("{}"), features=np.zeros((4, 2)), mean=np.zeros(2), cov=np.eye(2))
    truncated = folder / "truncated.npz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a copy cut short: still starts "PK"
    plain = folder / "plain.npz"
    with open(plain, "wb") as handle:
        np.save(handle, np.zeros((4, 2)))  # an .npy under an .npz name
    return {"truncated": truncated, "plain": plain}


@pytest.mark.parametrize("kind", ["truncated", "plain"])
def test_a_broken_feature_cache_or_statistics_file_is_one_clear_error(tmp_path, kind):
    path = _broken_files(tmp_path)[kind]
    with pytest.raises(ValueError, match="is not a feature cache .*delete it"):
        cached_features(lambda images: images.mean(dim=(2, 3)), lambda: [torch.zeros(2, 3, 4, 4)], path, {})
    with pytest.raises(ValueError, match="is not a readable .npz statistics file"):
        FeatureStats.load(path)


def test_statistics_with_a_malformed_count_or_text_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "count.npz", mean=np.zeros(2), cov=np.eye(2), count=np.array([3, 4]))
    np.savez(tmp_path / "text.npz", mu=np.array(["a", "b"]), sigma=np.eye(2))
    with pytest.raises(ValueError, match="'count' must be one non-negative integer"):
        FeatureStats.load(tmp_path / "count.npz")
    with pytest.raises(ValueError, match="must be numbers"):
        FeatureStats.load(tmp_path / "text.npz")


def test_evaluate_refuses_a_truncated_reference_cache_in_one_line_before_any_work(tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    for index in range(4):
        Image.new("L", (32, 32), color=index * 60).save(samples / f"{index:06d}_class{index}.png")
    cache = _broken_files(tmp_path / "broken")["truncated"]
    argv = ["evaluate", "--samples", str(samples), "--reference", f"fashion-mnist:{ASSETS}"]
    assert main([*argv, "--features", "classifier", "--reference-cache", str(cache)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is not a feature cache" in error and "delete it" in error


def test_iter_features_leaves_inference_mode_off_between_batches():
    batches = [torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)]
    modes = []

    def extractor(images):
        modes.append(torch.is_inference_mode_enabled())  # the extractor itself runs without autograd
        return images.mean(dim=(2, 3))

    for features in iter_features(extractor, batches, progress=False):
        assert features.shape == (2, 3)
        assert not torch.is_inference_mode_enabled()  # the caller's code between batches: autograd works
        assert torch.ones(1, requires_grad=True).mul(2).requires_grad
    assert modes == [True, True]
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        compute_features(extractor, batches, progress=False, max_images=0)
