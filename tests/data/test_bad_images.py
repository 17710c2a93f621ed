"""Bad files in an image folder are converted, or skipped and counted, never a crash deep into a run."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main as cli_main
from nextscale.data.image_reading import BadImageError
from nextscale.data.images import ImageFolderDataset
from nextscale.training.data_specs import build_datasets

SIZE = 16


def _bad_folder(root):
    """One file of each kind in class "a"; class "b" holds plain RGB images (the held-out split needs two)."""
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (40 * i, 0, 0)).save(b / f"{i}.png")
    Image.new("RGB", (20, 24), (0, 200, 0)).save(a / "00-rgb.png")
    (a / "01-corrupt.png").write_text("not an image")
    Image.new("RGB", (20, 20), (1, 2, 3)).save(a / "02-truncated.png")
    data = (a / "02-truncated.png").read_bytes()
    (a / "02-truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("L", (20, 20), 77).save(a / "03-gray.png")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(a / "04-rgba.png")  # fully transparent red
    Image.fromarray(np.full((20, 20), 32896, dtype=np.uint16)).save(a / "05-16bit.png")  # mid-gray in 16 bits
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(a / "06-cmyk.jpg")
    Image.new("RGB", (20, 20), (0, 0, 255)).convert("P").save(a / "07-palette.png")
    Image.new("RGB", (3, 40), (9, 9, 9)).save(a / "08-tiny.png")  # shorter side 3 < max(4 px, 16 / 8)
    Image.new("RGB", (10, 10), (5, 5, 5)).save(a / "09-small.png")  # upscaled, not skipped
    Image.new("RGB", (300, 300), (7, 7, 7)).save(a / "10-huge.png")  # over the limit the test sets
    return root


def test_every_kind_is_converted_or_skipped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)
    root = _bad_folder(tmp_path / "images")
    dataset = ImageFolderDataset(root, SIZE, train=False, mid_reso=1.0, bad_images="skip")
    counts = dataset.scan()
    assert counts == {"unreadable": 1, "tiny": 1, "huge": 1, "upscaled": 1}  # headers only: truncation not seen
    names = [path.name for path, _ in dataset.samples]
    items = [dataset[i] for i in range(len(dataset))]  # every index yields an image
    assert all(image.shape == (3, SIZE, SIZE) and torch.isfinite(image).all() for image, _ in items)
    assert dataset.skip_counts() == {"unreadable": 1, "tiny": 1, "huge": 1, "truncated": 1}

    def pixel(name):  # RGB value of the image at that file's index
        return ((items[names.index(name)][0][:, 8, 8] + 1) * 127.5).round().tolist()

    assert pixel("03-gray.png") == [77, 77, 77]
    assert pixel("04-rgba.png") == [255, 255, 255]  # transparent pixels are composited on white
    assert pixel("05-16bit.png") == [128, 128, 128]  # 32896 / 257, not clipped to 255
    assert pixel("06-cmyk.jpg")[0] > 200 and max(pixel("06-cmyk.jpg")[1:]) < 60  # CMYK red stays red
    assert pixel("07-palette.png") == [0, 0, 255]
    assert pixel("01-corrupt.png") == pixel("02-truncated.png") == pixel("03-gray.png")  # next good file, same label
    gray = ImageFolderDataset(root, SIZE, train=False, mid_reso=1.0, channels=1, bad_images="skip")
    assert ((gray[names.index("05-16bit.png")][0] + 1) * 127.5).round().unique().tolist() == [128]


def test_fail_policy_names_the_file_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)
    root = _bad_folder(tmp_path / "images")
    with pytest.raises(ValueError, match=r"cannot be used \(1 huge, 1 tiny, 1 unreadable\).*01-corrupt.png"):
        build_datasets(str(root), SIZE, 3, bad_images="fail")
    dataset = ImageFolderDataset(root, SIZE, bad_images="fail")
    truncated = [path.name for path, _ in dataset.samples].index("02-truncated.png")
    with pytest.raises(BadImageError, match="02-truncated.png.*truncated"):
        dataset[truncated]


def test_cli_trains_past_bad_files_and_counts_them_at_start_and_end(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)
    root = _bad_folder(tmp_path / "images")
    command = (
        f"--data {root} --preset tiny --resolution {SIZE} --in-channels 3 --steps 3 --batch-size 4 --lr 0.002 "
        f"--eval-every none --preview-every none --no-progress --run-dir {tmp_path / 'run'}"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only spin on a shared CPU
    try:
        with caplog.at_level(logging.INFO, logger="nextscale"):
            assert cli_main(["train-tokenizer", *command.split()]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = [record.getMessage() for record in caplog.records if record.name == "nextscale.data"]
    start = [line for line in lines if line.startswith("checked") and "skipping 3 bad files" in line]
    assert len(start) == 1 and "(1 huge, 1 tiny, 1 unreadable)" in start[0]
    assert "; 1 file smaller than 16 px is upscaled" in start[0]
    # one line for the folder, held-out split included (it shares the training files' check)
    assert (
        start[0].startswith(f"checked 15 image files of {root}: ")
        and len([line for line in lines if line.startswith("checked")]) == 1
    )
    end = [line for line in lines if line.startswith("skipped ")]
    assert len(end) == 1 and "1 unreadable" in end[0]  # the end count, of every training file the start line checked
    data = next(line for line in lines if line.startswith("data: "))
    held_out = next(line for line in lines if line.startswith("held-out: "))
    assert held_out.startswith("held-out: 2 of the 12 usable images") and "3 bad files not counted" in held_out
    assert data.startswith("data: 10 training images")  # 15 files: 3 bad headers left out, 2 held out
    assert " of 13 image files" in end[0]  # the 10 trained on and the 3 left out


def test_a_corrupt_file_never_takes_a_classs_held_out_place(tmp_path):
    """The carved held-out split comes from usable files: every class keeps one real held-out image, no repeats."""
    root = tmp_path / "images"
    for label, name in enumerate(("cars", "faces")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 20), (50 * i, 100 * label, 0)).save(root / name / f"{i}.png")
    labels = [0] * 5 + [1] * 5
    from nextscale.data.folders import carve_held_out

    held = carve_held_out(labels)  # which file each class would give up with no bad file
    victim = sorted((root / "cars").iterdir())[held[0]]
    victim.write_bytes(b"\x89PNG random bytes, not an image")
    train, held_out = build_datasets(str(root), SIZE, 3, bad_images="skip")
    assert victim not in [path for path, _ in held_out.samples]
    assert sorted(label for _, label in held_out.samples) == [0, 1]  # cars still has a held-out image
    assert len({path for path, _ in held_out.samples}) == len(held_out) == 2
    assert "held-out: 2 of the 9 usable images" in train.split_note and "1 bad file not counted" in train.split_note
    assert victim in train.left_out and train.skip_counts() == {"unreadable": 1}  # counted on the training side
    val, _ = build_datasets(str(root), SIZE, 3, split="val", bad_images="skip")
    assert [path for path, _ in val.samples] == [path for path, _ in held_out.samples]  # tokenize --split val agrees


def test_a_pass_over_every_image_leaves_bad_files_out_and_names_them(tmp_path, caplog, monkeypatch):
    """Tokenizing or evaluating a folder sees each good image once (no stand-in copies) and the log names the bad."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)
    root = _bad_folder(tmp_path / "images")
    with caplog.at_level(logging.WARNING, logger="nextscale"):
        train, _ = build_datasets(str(root), SIZE, 3, split="train", bad_images="skip")
    paths = [path for path, _ in train.samples]
    assert len(paths) == len(set(paths)) and not {"01-corrupt.png", "08-tiny.png", "10-huge.png"} & {
        path.name for path in paths
    }
    assert train.skip_counts() == {"unreadable": 1, "tiny": 1, "huge": 1}  # still counted for the end report
    line = next(r.getMessage() for r in caplog.records if "skipping 3 bad files" in r.getMessage())
    assert "01-corrupt.png (unreadable)" in line and "08-tiny.png (tiny)" in line and "10-huge.png (huge)" in line


def test_files_found_bad_in_dataloader_workers_are_counted_and_passed_over_later(tmp_path):
    # With --num-workers > 0 a truncated file was found in a worker's copy of the dataset: the end-of-run count left
    # it out (2 instead of 3 skipped), and each epoch's fresh workers tried it and warned about it again.
    dataset = ImageFolderDataset(_bad_folder(tmp_path), 16, bad_images="skip", seed=0)
    truncated = tmp_path / "a" / "02-truncated.png"
    dataset.scan()  # the header check at start: corrupt and tiny; the truncated file passes it
    assert "truncated" not in dataset.skip_counts() and truncated not in dataset.skipped
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    assert sum(len(images) for images, _ in loader) == len(dataset)
    dataset.set_epoch(1)
    assert truncated in dataset.skipped  # the next epoch's workers, forked after set_epoch, pass over it
    assert dataset.skip_counts()["truncated"] == 1
    assert (truncated, "truncated") in dataset.bad_files()
