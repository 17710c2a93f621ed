"""Image-folder layouts, the held-out split carved from a folder without val/, and the data summary."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nextscale.data.folders import FolderLayout, carve_held_out, folder_layout, open_image_folder
from nextscale.data.images import ImageFolderDataset
from nextscale.data.summary import describe_data, file_sizes, resolution_line
from nextscale.scales import ScaleSchedule, default_scale_sides

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "tests" / "assets" / "image_folder"  # bag/ and sneaker/, two images each


def make_shapes(out: Path, per_class: int, size: int = 32) -> list[Path]:
    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "scripts" / "make_shapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_shapes(out, per_class=per_class, size=size)


def files(dataset) -> list[Path]:
    return [path for path, _ in dataset.samples]


def test_default_scale_sides_double_up_to_the_latent_side():
    assert default_scale_sides(8) == (1, 2, 4, 8)
    assert ScaleSchedule(default_scale_sides(8)).total_tokens == 85
    assert default_scale_sides(16) == (1, 2, 4, 8, 16)
    assert default_scale_sides(6) == (1, 2, 4, 6)
    assert default_scale_sides(1) == (1,)
    with pytest.raises(ValueError):
        default_scale_sides(0)


def test_carve_held_out_rule():
    labels = [0] * 20 + [1] * 20 + [2] * 20
    held = carve_held_out(labels)
    assert len(held) == 3 and sorted({labels[i] for i in held}) == [0, 1, 2]  # 5 % of 20 = 1 per class
    assert carve_held_out(labels) == held  # deterministic
    assert len(carve_held_out([0] * 10 + [1] * 10)) == 2  # round(0.5) = 0, raised to one per class
    assert len(carve_held_out([0] * 100)) == 5
    assert carve_held_out([0, 1, 1]) == [carve_held_out([0, 1, 1])[0]] and 0 not in carve_held_out([0, 1, 1])
    assert carve_held_out([0, 1, 2]) == []  # a class's only image stays in training
    # Adding images to one class leaves the other classes' held-out images alone.
    grown = carve_held_out([0] * 20 + [1] * 30)
    assert [i for i in grown if i < 20] == [i for i in carve_held_out([0] * 20 + [1] * 20) if i < 20]


def test_plain_folder_carves_a_disjoint_held_out_split(tmp_path):
    all_files = make_shapes(tmp_path / "shapes", per_class=10)
    train, held_out = open_image_folder(tmp_path / "shapes", 32, 3)
    assert len(train) == 54 and len(held_out) == 6
    assert set(files(train)).isdisjoint(files(held_out))
    assert sorted(files(train) + files(held_out)) == all_files
    assert sorted({label for _, label in held_out.samples}) == list(range(6))  # every class evaluated
    assert train.classes == held_out.classes and len(train.classes) == 6
    assert not held_out.transform.train and train.transform.train
    # tokenize --split val / train see exactly the same two sides, with center crops.
    val_only, none = open_image_folder(tmp_path / "shapes", 32, 3, split="val")
    assert none is None and files(val_only) == files(held_out) and not val_only.transform.train
    train_only, _ = open_image_folder(tmp_path / "shapes", 32, 3, split="train")
    assert files(train_only) == files(train) and not train_only.transform.train
    assert files(open_image_folder(tmp_path / "shapes", 32, 3, split="test")[0]) == files(held_out)
    assert train.split_note == held_out.split_note == val_only.split_note
    assert train.split_note == (
        f"held-out: 6 of the 60 images of {tmp_path / 'shapes'} (5 %, at least 1 per class, seed 0), carved out as "
        "it has no val/ folder"
    )


def test_folder_without_a_possible_held_out_split_refuses_val(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "root" / name).mkdir(parents=True)
        Image.new("RGB", (20, 20), (200, 10, 10)).save(tmp_path / "root" / name / "only.png")
    train, held_out = open_image_folder(tmp_path / "root", 16, 3)
    assert len(train) == 2 and held_out is None
    assert train.origin == str(tmp_path / "root")  # not "(without the 0 held-out images)"
    with pytest.raises(ValueError, match="too few usable images per class to hold any out"):
        open_image_folder(tmp_path / "root", 16, 3, split="val")
    assert train.split_note.startswith("held-out: none, so no held-out evaluation: ")
    assert "no class with 2 or more usable images" in train.split_note


def test_a_train_folder_given_as_data_holds_out_its_val_sibling(tmp_path):
    """`--data photos/train` means photos: its val/ sibling is the held-out set, not a 5 % carved from train/."""
    shutil.copytree(FOLDER, tmp_path / "root" / "train")
    shutil.copytree(FOLDER, tmp_path / "root" / "val")
    layout = folder_layout(tmp_path / "root" / "train")
    assert (layout.train_dir, layout.held_out_dir) == (tmp_path / "root" / "train", tmp_path / "root" / "val")
    train, held_out = open_image_folder(tmp_path / "root" / "train", 16, 3)
    assert len(train) == 4 and len(held_out) == 4
    shutil.rmtree(tmp_path / "root" / "val")  # no sibling: carved from train/ as before
    assert folder_layout(tmp_path / "root" / "train").carved


def test_train_and_val_layout(tmp_path):
    shutil.copytree(FOLDER, tmp_path / "root" / "train")
    shutil.copytree(FOLDER, tmp_path / "root" / "val")
    train, held_out = open_image_folder(tmp_path / "root", 16, 3)
    assert folder_layout(tmp_path / "root").held_out_dir == tmp_path / "root" / "val"
    assert len(train) == 4 and len(held_out) == 4 and train.classes == ["bag", "sneaker"]
    assert train.split_note is None and held_out.split_note is None
    assert files(open_image_folder(tmp_path / "root", 16, 3, split="val")[0]) == files(held_out)
    shutil.rmtree(tmp_path / "root" / "val" / "sneaker")
    with pytest.raises(ValueError, match="same class sub-folders"):
        open_image_folder(tmp_path / "root", 16, 3)


def test_a_flat_val_folder_says_how_to_go_on(tmp_path):
    """ImageNet's val/ comes as one flat folder of images: no labels, so the error says what to do with it."""
    shutil.copytree(FOLDER, tmp_path / "root" / "train")
    (tmp_path / "root" / "val").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "root" / "val" / "ILSVRC2012_val_00000001.JPEG")
    for split in (None, "val"):
        with pytest.raises(ValueError, match="holds no class sub-folders.*sort them into the class folders"):
            open_image_folder(tmp_path / "root", 16, 3, split=split)
    assert len(open_image_folder(tmp_path / "root", 16, 3, split="train")[0]) == 4  # train/ alone needs no val/


def test_val_split_alone_keeps_the_training_labels(tmp_path):
    """tokenize --split val reads val/ alone: a class missing there must not shift the labels after it."""
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (tmp_path / "root" / split / name).mkdir(parents=True)
            Image.new("RGB", (16, 16), (10, 200, 10)).save(tmp_path / "root" / split / name / "x.png")
    val, _ = open_image_folder(tmp_path / "root", 16, 3, split="val")
    assert val.classes == ["a", "b", "c"] and [label for _, label in val.samples] == [0, 1, 2]
    shutil.rmtree(tmp_path / "root" / "val" / "b")  # c would become label 1 in val/ but is 2 in train/
    with pytest.raises(ValueError, match="same class sub-folders"):
        open_image_folder(tmp_path / "root", 16, 3, split="val")


def test_a_class_named_train_beside_other_classes_is_a_class(tmp_path):
    """CIFAR-100 exported as class folders has a class "train": images, no sub-folders, beside other classes."""
    for name in ("apple", "bus", "train"):
        (tmp_path / "root" / name).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (16, 16), (index * 90, 10, 10)).save(tmp_path / "root" / name / f"{index}.png")
    assert folder_layout(tmp_path / "root") == FolderLayout(tmp_path / "root", None)
    train, held_out = open_image_folder(tmp_path / "root", 16, 3)
    assert train.classes == ["apple", "bus", "train"] and len(train) == 3 and len(held_out) == 3
    assert folder_layout(tmp_path / "root" / "train").train_dir == tmp_path / "root" / "train"  # not its parent


def test_train_folder_alone_is_not_a_class(tmp_path):
    shutil.copytree(FOLDER, tmp_path / "root" / "train")
    train, held_out = open_image_folder(tmp_path / "root", 16, 3)
    assert train.classes == ["bag", "sneaker"]  # not ["train"]
    assert len(train) == 2 and len(held_out) == 2  # one of the two images of each class held out


def test_summary_lines(tmp_path):
    make_shapes(tmp_path / "shapes", per_class=4, size=64)
    train, held_out = open_image_folder(tmp_path / "shapes", 32, 3)
    lines = describe_data(train, held_out, train.split_note)
    assert lines[0].startswith("data: 18 training images from")
    assert "6 classes (0: blue_circle, 1: blue_square, 2: green_circle" in lines[0]
    assert lines[1] == "files: 64x64 RGB (sizes read from all 18 files)"
    assert lines[2] == train.split_note and lines[2].startswith("held-out: 6 of the 24 images of")
    assert len(lines) == 3  # one held-out line: the carved split says where it comes from
    line = resolution_line(32, 3, (1, 2, 4, 8), "preset tiny", file_sizes(train), downsample=4)
    assert line.startswith("images 32x32 RGB -> tokens: scales 1,2,4,8 (85 tokens), from preset tiny")
    assert "your images are 64x64; training at 32x32 (preset tiny) - pass --resolution 64 to keep them" in line
    gray = resolution_line(32, 1, (1, 2, 4, 8), "preset tiny", file_sizes(train), downsample=4)
    assert "the model is grayscale, so colours are lost" in gray
    same = resolution_line(64, 3, (1, 2, 4, 8, 16), "--resolution 64", file_sizes(train), downsample=4)
    assert "your images" not in same and "(341 tokens)" in same
    # tokenize / train with a tokenizer trained at 32 px: keeping 64 px works, but a 64 px tokenizer does it better
    hint = resolution_line(32, 3, (1, 2, 4, 8), "the tokenizer t", file_sizes(train), downsample=4, trained_side=32)
    assert hint.endswith(
        "pass --resolution 64 to keep them (a tokenizer trained at 64 px (train-tokenizer --resolution 64) "
        "reconstructs them better than this one, trained at 32 px)"
    )
    kept = resolution_line(64, 3, (1, 2, 4, 8, 16), "--resolution 64", file_sizes(train), downsample=4, trained_side=32)
    assert "the tokenizer was trained at 32x32, not 64x64: a tokenizer trained at 64 px" in kept
    assert "the tokenizer was trained" not in resolution_line(
        64, 3, (1, 2, 4, 8, 16), "the tokenizer t", file_sizes(train), downsample=4, trained_side=64
    )
    assert "held-out: none" in describe_data(train)[-1]
    Image.new("RGB", (90, 70), (9, 9, 9)).save(train.samples[0][0])  # sizes now vary
    varied = file_sizes(train)
    assert "randomly cropped (center-cropped for evaluation) to 32x32" in resolution_line(
        32, 3, (1, 2, 4, 8), "preset tiny", varied, downsample=4
    )
    tokenizing = resolution_line(32, 3, (1, 2, 4, 8), "preset tiny", varied, downsample=4, training=False)
    assert "each is resized (shorter side) and center-cropped to 32x32" in tokenizing


def test_files_line_says_how_many_sizes_were_read_and_what_transparency_becomes(tmp_path):
    """The files line counts the headers it read (not a check of every file), and says when transparent pixels
    are composited on white, as reading them does; a size range is given without the modes in the size note."""
    make_shapes(tmp_path / "shapes", per_class=4, size=64)
    train, _ = open_image_folder(tmp_path / "shapes", 32, 3)
    assert file_sizes(train, limit=6).describe() == "64x64 RGB (sizes read from 6 of 18 files)"
    path = train.samples[0][0]
    Image.new("RGBA", (90, 70), (9, 9, 9, 0)).save(path)
    sizes = file_sizes(train)
    assert sizes.transparent == 1
    assert sizes.describe() == (
        "64x64 to 90x70 RGB, RGBA, transparent pixels composited on white (sizes read from all 18 files)"
    )
    line = resolution_line(32, 3, (1, 2, 4, 8), "preset tiny", sizes, downsample=4)
    assert "your images vary in size (64x64 to 90x70); each is resized" in line
    palette = Image.new("RGB", (64, 64), (9, 9, 9)).convert("P")
    palette.save(path, transparency=0)  # a palette colour marked transparent (tRNS)
    assert file_sizes(train).transparent == 1
    palette.save(path)  # the same palette image, opaque: nothing is composited
    assert file_sizes(train).transparent == 0 and "transparent" not in file_sizes(train).describe()


def test_sixteen_bit_big_endian_tiffs_count_as_grayscale(tmp_path):
    """A 16-bit TIFF opens as I;16B: grayscale for the report's colour note and for the channels a folder implies."""
    from nextscale.training.data_specs import data_channels

    (tmp_path / "a").mkdir()
    pixels = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 250).astype(">u2")
    Image.frombuffer("I;16B", (16, 16), pixels.tobytes(), "raw", "I;16B", 0, 1).save(tmp_path / "a" / "x.tif")
    assert Image.open(tmp_path / "a" / "x.tif").mode == "I;16B"
    sizes = file_sizes(ImageFolderDataset(tmp_path, 16))
    assert "in colour" not in resolution_line(16, 1, (1, 2, 4), "preset tiny", sizes, 4)
    assert "your images are grayscale" in resolution_line(16, 3, (1, 2, 4), "preset tiny", sizes, 4)
    assert data_channels(str(tmp_path)) == 1


def test_channels_of_a_folder_are_judged_over_all_classes_not_the_first_files(tmp_path):
    """train-tokenizer's default --in-channels: a first class of gray sketches must not make a colour set gray."""
    from nextscale.training.data_specs import data_channels

    for name, mode in (("a_sketch", "L"), ("b_photo", "RGB")):
        (tmp_path / name).mkdir()
        for index in range(70):
            Image.new(mode, (8, 8), index if mode == "L" else (index, 200, 0)).save(tmp_path / name / f"{index:03}.png")
    assert data_channels(str(tmp_path)) == 3
    shutil.rmtree(tmp_path / "b_photo")
    assert data_channels(str(tmp_path)) == 1


def test_header_reads_for_the_report_do_not_print_pillows_bomb_warning(tmp_path, monkeypatch):
    """A huge file is reported once, as "huge", by the bad-file check: the channel guess and the files line read its
    header without Pillow's DecompressionBombWarning (a raw Python warning with a library path)."""
    import warnings

    from PIL import Image as PILImage

    from nextscale.training.data_specs import data_channels

    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 40)).save(tmp_path / "a" / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data_channels(str(tmp_path)) == 3
        assert file_sizes(ImageFolderDataset(tmp_path, 16)).checked == 1
