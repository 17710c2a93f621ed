"""A reference image of class-conditional evaluation that cannot be decoded (a truncated file, which passes the header
check) is left out of the FID statistics and named in the report (--bad-images skip, the default), or stops the run
naming it (--bad-images fail). The folder dataset's ``__getitem__`` used to stand the next image in for it, counting
that image twice without a word in the report."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.cli.evaluate_class import open_class_reference, real_inputs
from nextscale.cli.evaluate_reference import ReadableReference, left_out_warnings, reference_batches

SIZE = 32


def folder_with_a_truncated_png(root):
    """Two class folders of three 32 px noise images each; class0/1.png keeps its header but loses half its pixels."""
    rng = np.random.default_rng(0)
    for label in range(2):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(3):
            pixels = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class{label}" / f"{index}.png")
    bad = root / "class0" / "1.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return root, bad


def test_reference_batches_leave_a_truncated_image_out_and_name_it(tmp_path):
    root, bad = folder_with_a_truncated_png(tmp_path / "real")
    folder = open_class_reference(str(root), SIZE, 1, "test", "skip")
    assert len(folder) == 6  # the header check passes it: only decoding finds it
    read = ReadableReference(folder, leave_out=True)
    batches = list(reference_batches(read))
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    good = [index for index, (path, _) in enumerate(folder.samples) if path != bad]
    expected = torch.stack([folder.read(index)[0] for index in good])
    assert torch.equal(images, expected)  # each readable image once, none standing in for the bad one
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert read.left_out == [(str(bad), "truncated: image file is truncated")]
    [line] = left_out_warnings(str(root), len(folder), read, len(images), cache=None)
    assert f"left out 1 of the 6 reference images of {root}" in line and str(bad) in line


def test_the_images_edits_and_reconstructions_take_leave_out_what_the_feature_pass_did(tmp_path):
    root, bad = folder_with_a_truncated_png(tmp_path / "real")
    folder = open_class_reference(str(root), SIZE, 1, "test", "skip")
    read = ReadableReference(folder, leave_out=True)
    list(reference_batches(read))
    inputs = real_inputs(folder, read, 5, str(root))
    assert len(inputs) == 5 and bad not in [path for path, _ in folder.samples]
    with pytest.raises(ValueError, match="holds 5 images that can be decoded; give --num 5 or less"):
        real_inputs(folder, read, 6, str(root))
    # features from a cache: nothing was read, so the images to take are decoded first and the bad one left out
    fresh = open_class_reference(str(root), SIZE, 1, "test", "skip")
    unread = ReadableReference(fresh, leave_out=True)
    assert len(real_inputs(fresh, unread, 4, str(root))) == 5 and unread.left_out == read.left_out


def test_a_cache_written_without_an_unreadable_image_says_so(tmp_path):
    root, _ = folder_with_a_truncated_png(tmp_path / "real")
    folder = open_class_reference(str(root), SIZE, 1, "test", "skip")
    [line] = left_out_warnings(str(root), len(folder), ReadableReference(folder, True), 5, cache=tmp_path / "c.npz")
    assert "holds the features of 5 of the 6 images" in line
    with pytest.raises(ValueError, match="holds 3 image.s. that can be decoded; give at least 4"):
        left_out_warnings(str(root), len(folder), ReadableReference(folder, True), 3, cache=None)


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_reports_the_left_out_reference_image(model_dir, tmp_path, capsys, monkeypatch):
    from nextscale.evaluation import generate

    def fake_batches(pipe, num, batch_size, **settings):  # stands in for sampling (seconds on this CPU)
        yield torch.rand(num, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).mul(2).sub(1), torch.zeros(num)

    monkeypatch.setattr(generate, "generate_batches", fake_batches)
    root, bad = folder_with_a_truncated_png(tmp_path / "real")
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model_dir), "--reference", str(root), "--num", "4"]
    assert main([*argv, "--features", "classifier", "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["reference_count"] == 5
    assert report["reference_left_out"] == [{"file": str(bad), "reason": "truncated: image file is truncated"}]
    assert report["warnings"][0].startswith(f"left out 1 of the 6 reference images of {root}, which cannot be decoded")
    assert f"warning: left out 1 of the 6 reference images of {root}" in capsys.readouterr().err

    assert main([*argv, "--features", "classifier", "--bad-images", "fail"]) == 2
    error = capsys.readouterr().err
    assert f"reference image {bad} cannot be decoded" in error and "pass --bad-images skip" in error


def test_a_truncated_captioned_reference_image_is_left_out_of_samples_evaluation(tmp_path):
    """``evaluate --samples DIR --reference captions:PATH`` read its reference through the caption dataset's
    ``__getitem__``, which stands the next image in for a truncated one, too."""
    from nextscale.cli.evaluate_samples import open_reference

    root = tmp_path / "captions"
    root.mkdir()
    rng = np.random.default_rng(1)
    for index in range(5):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / f"{index}.png")
        (root / f"{index}.txt").write_text(f"picture {index}")
    data = (root / "2.png").read_bytes()
    (root / "2.png").write_bytes(data[: len(data) // 2])
    reference = open_reference(f"captions:{root}", SIZE, "skip")
    read = ReadableReference(reference, leave_out=True)
    indices = torch.cat([indices for _, indices in reference_batches(read)])
    assert indices.tolist() == [0, 1, 3, 4]
    assert [name for name, _ in read.left_out] == [str(root / "2.png")]
