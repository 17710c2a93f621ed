"""Every reference image `nextscale evaluate` leaves out is named in the report with its reason: those the header
check refused before decoding (unreadable, tiny; they were named only in the log) beside those that failed to decode.
And --reconstructions / --edit with reference features from the cache, which never decoded the folder, leave out a
file that cannot be decoded under --bad-images skip (they used to stop there) and stop naming it under fail."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import evaluate, main

SIZE = 32


def mean_and_spread(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 2): a feature network small enough for five images to have a full covariance."""
    flat = images.flatten(1)
    return torch.stack([flat.mean(1), flat.std(1)], dim=1)


@pytest.fixture
def tiny_features(monkeypatch):
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda *args, **kwargs: (mean_and_spread, "mean-spread"))
    from nextscale.cli import evaluate_class, evaluate_samples

    monkeypatch.setattr(evaluate_class, "load_judge", lambda *args: None)
    monkeypatch.setattr(evaluate_samples, "load_judge", lambda *args: None)


def reference_folder(root):
    """Two classes of three 32 px noise images, plus a 2x2 image (tiny) and a file that is no image (unreadable),
    both refused by the header check; class0/1.png keeps its header but loses half its pixels (truncated)."""
    rng = np.random.default_rng(0)
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(
                root / f"class{label}" / f"{index}.png"
            )
    Image.fromarray(rng.integers(0, 256, (2, 2), dtype=np.uint8)).save(root / "class0" / "tiny.png")
    (root / "class1" / "junk.png").write_bytes(b"not an image")
    truncated = root / "class0" / "1.png"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    return {
        str(root / "class0" / "tiny.png"): "tiny",
        str(root / "class1" / "junk.png"): "unreadable",
        str(truncated): "truncated: image file is truncated",
    }


def test_samples_report_names_header_refused_and_undecodable_reference_files(tmp_path, tiny_features):
    left_out = reference_folder(tmp_path / "real")
    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(1)
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(samples / f"{index:06d}.png")
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--samples", str(samples), "--reference", str(tmp_path / "real"), "--features", "classifier"]
    assert main([*argv, "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["reference_count"] == 5
    assert {entry["file"]: entry["reason"] for entry in report["reference_left_out"]} == left_out
    assert len(report["reference_left_out"]) == 3  # each once
    header_line = next(line for line in report["warnings"] if "header check" in line)
    assert header_line.startswith(f"left out 2 of the 8 reference files of {tmp_path / 'real'}")
    assert "tiny.png (tiny)" in header_line and "junk.png (unreadable)" in header_line


def test_reconstructions_with_cached_reference_features_leave_out_an_undecodable_file(
    model_dir, tmp_path, capsys, tiny_features
):
    left_out = reference_folder(tmp_path / "real")
    cache, report_path = tmp_path / "reference.npz", tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model_dir), "--reference", str(tmp_path / "real"), "--features", "classifier"]
    argv += ["--reconstructions", "--reference-cache", str(cache), "--num", "4"]
    assert main(argv) == 0  # writes the cache, leaving the truncated file out of it
    assert main([*argv, "--out", str(report_path)]) == 0  # the features come from the cache: nothing decoded them
    report = json.loads(report_path.read_text())
    assert {entry["file"]: entry["reason"] for entry in report["reference_left_out"]} == left_out
    assert report["num_samples"] == 4 and report["reference_count"] == 5
    assert not any("the run that wrote it left out" in line for line in report["warnings"])  # named, not counted
    capsys.readouterr()
    assert main([*argv, "--num", "6"]) == 2  # five images decode
    assert "holds 5 images that can be decoded; give --num 5 or less" in capsys.readouterr().err


def test_reconstructions_with_cached_features_and_bad_images_fail_stop_naming_the_file(
    model_dir, tmp_path, capsys, tiny_features
):
    left_out = reference_folder(tmp_path / "real")
    truncated = next(name for name, why in left_out.items() if why.startswith("truncated"))
    for name in set(left_out) - {truncated}:
        Path(name).unlink()  # only the truncated file is left, which the header check passes
    argv = ["evaluate", "--model", str(model_dir), "--reference", str(tmp_path / "real"), "--features", "classifier"]
    argv += ["--reconstructions", "--reference-cache", str(tmp_path / "reference.npz"), "--num", "4"]
    assert main(argv) == 0  # writes the cache, leaving the truncated file out of it
    capsys.readouterr()
    assert main([*argv, "--bad-images", "fail"]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith(f"nextscale evaluate: error: reference image {truncated} cannot be decoded")
    assert "pass --bad-images skip to leave it out" in error


def test_a_cache_that_left_out_images_is_refused_under_bad_images_fail(tmp_path):
    """Features from a cache that a --bad-images skip run wrote without an undecodable image: a --bad-images fail run
    scored against them without a stop (the file was never decoded to stop at)."""
    from nextscale.cli.evaluate_class import open_class_reference
    from nextscale.cli.evaluate_reference import ReadableReference, left_out_warnings

    left_out = reference_folder(tmp_path / "real")
    for name, why in left_out.items():
        if not why.startswith("truncated"):
            Path(name).unlink()
    folder = open_class_reference(str(tmp_path / "real"), SIZE, 1, "test", "fail")
    cache = tmp_path / "reference.npz"
    with pytest.raises(ValueError, match=r"holds the features of 5 of the 6 .*--bad-images fail stops"):
        left_out_warnings(str(tmp_path / "real"), len(folder), ReadableReference(folder, False), 5, cache)
    [line] = left_out_warnings(str(tmp_path / "real"), len(folder), ReadableReference(folder, True), 5, cache)
    assert "the run that wrote it left out 1 that could not be decoded" in line
