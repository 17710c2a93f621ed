import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.data.grids import make_grid, save_grid, to_pil
from nextscale.data.image_reading import load_image, open_image
from nextscale.data.images import ImageFolderDataset

FOLDER = Path(__file__).resolve().parents[1] / "assets" / "image_folder"


def test_folder_dataset_classes_and_items():
    dataset = ImageFolderDataset(FOLDER, size=32, train=False)
    assert dataset.classes == ["bag", "sneaker"]
    assert len(dataset) == 4
    assert [label for _, label in dataset.samples] == [0, 0, 1, 1]
    image, label = dataset[3]
    assert image.shape == (3, 32, 32) and label == 1
    assert -1 <= image.min() and image.max() <= 1


def test_folder_dataset_seed_reproduces_crops():
    first = ImageFolderDataset(FOLDER, size=24, train=True, hflip=True, seed=3)
    second = ImageFolderDataset(FOLDER, size=24, train=True, hflip=True, seed=3)
    assert all(torch.equal(first[i][0], second[i][0]) for i in range(len(first)))
    second.set_epoch(1)
    assert any(not torch.equal(first[i][0], second[i][0]) for i in range(len(first)))


def test_corrupt_image_named_or_skipped(tmp_path):
    shutil.copytree(FOLDER, tmp_path / "root")
    broken = tmp_path / "root" / "bag" / "000.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(ValueError, match="000.png"):
        ImageFolderDataset(tmp_path / "root", size=16)[0]
    dataset = ImageFolderDataset(tmp_path / "root", size=16, bad_images="skip")
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and label == 0  # the next readable image, bag/001.jpg
    assert dataset.skip_counts() == {"truncated": 1}


def test_empty_folders_raise(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path, size=16)
    (tmp_path / "cat").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderDataset(tmp_path, size=16)
    with pytest.raises(FileNotFoundError):
        ImageFolderDataset(tmp_path / "missing", size=16)


def test_load_image_and_errors(tmp_path):
    image = load_image(FOLDER / "sneaker" / "001.jpg", size=20, channels=1)
    assert image.shape == (1, 20, 20)
    (tmp_path / "note.png").write_text("not an image")
    with pytest.raises(ValueError, match="note.png"):
        load_image(tmp_path / "note.png", size=20)


def test_a_very_large_photo_to_edit_is_called_too_large_not_corrupt(tmp_path, monkeypatch):
    """Over Pillow's limit a photo opens quietly; over twice it (a 200-megapixel phone photo) the error says
    what is wrong, not "corrupt or not an image"."""
    import warnings

    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(tmp_path / "big.png").size == (40, 40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ValueError, match="big.png is too large to open") as error:
        open_image(tmp_path / "big.png")
    assert "corrupt" not in str(error.value)


def test_to_pil_round_trip():
    pixels = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    images = pixels.float() / 127.5 - 1
    pils = to_pil(images)
    assert [p.size for p in pils] == [(7, 5), (7, 5)] and pils[0].mode == "RGB"
    assert torch.equal(torch.from_numpy(np.array(pils[1])).permute(2, 0, 1), pixels[1])
    assert to_pil(images[:, :1])[0].mode == "L"


def test_grid_size_without_labels(tmp_path):
    path = save_grid(torch.zeros(5, 1, 8, 6), tmp_path / "out" / "grid.png", nrow=3, padding=2)
    with Image.open(path) as grid:
        assert grid.format == "PNG"
        assert grid.size == (3 * 6 + 4 * 2, 2 * 8 + 3 * 2)


def test_grid_of_no_images_is_refused_clearly():
    with pytest.raises(ValueError, match="no images"):
        make_grid(torch.empty(0, 3, 8, 8))


def test_grid_with_labels_is_taller_and_draws_text():
    images = -torch.ones(4, 3, 16, 16)
    plain = make_grid(images, nrow=2)
    labelled = make_grid(images, nrow=2, labels=["T-shirt/top", "Bag", 3, "Ankle boot"])
    assert labelled.height > plain.height and labelled.width >= plain.width
    assert labelled.getextrema() != plain.getextrema()  # white text on black
    with pytest.raises(ValueError, match="one label per image"):
        make_grid(images, labels=["a"])


def test_grid_labels_draw_accented_letters_where_the_system_has_dejavu():
    from PIL import ImageFont

    from nextscale.data.grids import LABEL_FONT, _label_font

    try:
        ImageFont.truetype(*LABEL_FONT)
    except OSError:
        pytest.skip("DejaVu Sans is not installed: labels fall back to Pillow's ASCII-only font")
    font = _label_font()
    missing = font.getmask("\u0378")  # an unassigned code point: the font's "no glyph" box
    for letter in "éÄßж":
        glyph = font.getmask(letter)
        assert glyph.getbbox() != missing.getbbox() or bytes(glyph) != bytes(missing), letter


def test_images_are_turned_as_their_exif_orientation_says(tmp_path):
    """A phone photo stores its pixels sideways with an Orientation tag (6: turn 90 degrees clockwise); editing
    boxes, training crops and captions must see it as every viewer shows it."""
    from nextscale.data.image_reading import open_image, read_training_image

    stored = np.zeros((32, 64, 3), np.uint8)  # 64 wide, 32 high as stored
    stored[:, :8] = 255  # a white band at the stored left edge: the top edge once turned clockwise
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(tmp_path / "phone.png", exif=exif)
    for opened in (open_image(tmp_path / "phone.png"), read_training_image(tmp_path / "phone.png", 16, 3)):
        shown = np.asarray(opened)
        assert opened.size == (32, 64) and shown[:8].min() == 255 and shown[8:].max() == 0


def test_folder_dataset_leaves_out_hidden_files_and_folders_named_like_images(tmp_path):
    """macOS ``._x.jpg`` resource forks, ``.ipynb_checkpoints/`` copies and a folder called ``x.png`` are not
    images of the class: neither samples nor bad files. Upper-case and other extensions are found."""
    cat = tmp_path / "cat"
    (cat / ".ipynb_checkpoints").mkdir(parents=True)
    (cat / "nested.png").mkdir()
    for name in ("a.JPG", "b.jpeg", "c.webp", ".ipynb_checkpoints/a-checkpoint.png", "sub/é.png"):
        (cat / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (20, 20), (9, 9, 9)).save(cat / name, format="PNG" if name.endswith("png") else None)
    (cat / "._a.JPG").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (cat / "broken.png").symlink_to(tmp_path / "missing.png")  # a dangling link stays visible, as unreadable
    dataset = ImageFolderDataset(tmp_path, size=16, train=False, bad_images="skip")
    assert [path.relative_to(cat).as_posix() for path, _ in dataset.samples] == [
        "a.JPG",
        "b.jpeg",
        "broken.png",
        "c.webp",
        "sub/é.png",
    ]
    assert dataset.scan() == {"unreadable": 1, "upscaled": 0}


def test_a_macos_zip_folder_is_not_a_class(tmp_path):
    """Unzipping a macOS archive puts __MACOSX/ (resource forks only) beside the class folders: it must not become
    class 0 and shift every label."""
    for name in ("cat", "dog", "__MACOSX/cat", "dog/__MACOSX"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    for name in ("cat/a.png", "dog/b.png", "dog/__MACOSX/c.png"):
        Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / name)
    (tmp_path / "__MACOSX" / "cat" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    dataset = ImageFolderDataset(tmp_path, size=16, train=False)
    assert dataset.classes == ["cat", "dog"]
    assert [(path.relative_to(tmp_path).as_posix(), label) for path, label in dataset.samples] == [
        ("cat/a.png", 0),
        ("dog/b.png", 1),
    ]


def test_folder_dataset_follows_linked_folders_once(tmp_path):
    """A class folder assembled from links to folders elsewhere is read whole (``Path.rglob`` skips them), and a
    link back up the tree adds nothing twice."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (20, 20)).save(elsewhere / "far.png")
    cat = tmp_path / "data" / "cat"
    cat.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(cat / "near.png")
    (cat / "linked").symlink_to(elsewhere, target_is_directory=True)
    (cat / "loop").symlink_to(cat, target_is_directory=True)
    dataset = ImageFolderDataset(tmp_path / "data", size=16, train=False)
    assert [path.relative_to(cat).as_posix() for path, _ in dataset.samples] == ["linked/far.png", "near.png"]


def test_gif_and_tiff_are_read_and_other_files_are_named_once(tmp_path, caplog):
    """Pillow reads GIF (its first frame) and TIFF, so they count; an .heic is named in one warning, not skipped
    in silence; captions and annotations beside the images are no news."""
    cat = tmp_path / "cat"
    cat.mkdir()
    Image.new("P", (20, 20)).save(cat / "a.gif")
    Image.new("RGB", (20, 20)).save(cat / "b.tif")
    (cat / "c.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (cat / "b.txt").write_text("a caption")
    with caplog.at_level(logging.WARNING, logger="nextscale.data.images"):
        dataset = ImageFolderDataset(tmp_path, size=16, train=False)
    assert [path.name for path, _ in dataset.samples] == ["a.gif", "b.tif"]
    assert dataset[0][0].shape == (3, 16, 16)
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "ignoring 1 file(s) of .heic" in warnings[0] and "c.heic" in warnings[0]


def test_a_folder_without_val_warns_once_and_reads_its_held_out_part_center_cropped(tmp_path, caplog):
    from nextscale.data.folders import open_image_folder

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for idx in range(4):
            Image.new("RGB", (24, 20), (60 * idx, 0, 0)).save(tmp_path / name / f"{idx}.png")
    (tmp_path / "cat" / "c.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with caplog.at_level(logging.WARNING, logger="nextscale.data.images"):
        train, held_out = open_image_folder(tmp_path, size=16, channels=3)
    warnings = [record.getMessage() for record in caplog.records if "ignoring" in record.getMessage()]
    assert len(warnings) == 1  # the folder is listed once, not once more for its held-out part
    assert train.transform.train and not held_out.transform.train
    assert len(train) + len(held_out) == 8
    reference = ImageFolderDataset(tmp_path, size=16, train=False)
    path = held_out.samples[0][0]
    index = [p for p, _ in reference.samples].index(path)
    assert torch.equal(held_out[0][0], reference[index][0])


def test_pillows_bomb_check_turned_off_reads_every_size(tmp_path, monkeypatch):
    """``Image.MAX_IMAGE_PIXELS = None`` is Pillow's documented way to allow any size: no TypeError in the check."""
    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(tmp_path / "a" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    dataset = ImageFolderDataset(tmp_path, 16, train=False)
    assert dataset.scan() == {"upscaled": 0} and dataset[0][0].shape == (3, 16, 16)
