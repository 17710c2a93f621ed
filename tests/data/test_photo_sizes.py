"""Phone photos as users have them: stored sideways with an EXIF turn, or over Pillow's pixel limit."""

import logging

import numpy as np
import pytest
from PIL import Image, ImageFile

from nextscale.data.image_reading import BadImageError, read_training_image
from nextscale.data.images import ImageFolderDataset
from nextscale.data.summary import file_sizes
from nextscale.training.data_specs import check_bad_images, refuse_all_bad

SIZE = 8


def _sideways_jpeg(path, stored=(40, 24)):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show: the camera was held upright
    Image.new("RGB", stored, (10, 120, 200)).save(path, exif=exif)


def test_summary_reports_the_upright_size_from_headers_only(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    _sideways_jpeg(tmp_path / "a" / "photo.jpg")
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (40, 24)).save(tmp_path / "a" / "shot.png", exif=exif)  # a PNG with its eXIf before the pixels
    dataset = ImageFolderDataset(tmp_path, SIZE)

    def no_decoding(self):
        raise AssertionError("the summary decoded an image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    sizes = file_sizes(dataset)
    assert sizes is not None and sizes.checked == 2
    assert sizes.single_size == (24, 40)  # as read for training (``upright``), not the stored 40x24


def _photo(path, size, colour=(200, 60, 20)):
    rng = np.random.default_rng(0)
    pixels = np.clip(np.array(colour) + rng.integers(-3, 4, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.mark.parametrize("limit, shrunk", [(3600, (50, 30)), (1000, (25, 15))])
def test_a_jpeg_over_the_pixel_limit_trains_decoded_shrunk(tmp_path, monkeypatch, limit, shrunk):
    """100x60 = 6000 pixels: 1.7x a limit of 3600 (Pillow opens it, with a warning) halves it; over 6x a limit of
    1000 (Pillow refuses to open it) takes a quarter. The colour is intact and the file counts as usable."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    (tmp_path / "a").mkdir()
    _photo(tmp_path / "a" / "big.jpg", (100, 60))
    picture = read_training_image(tmp_path / "a" / "big.jpg", SIZE, channels=3)
    assert picture.size == shrunk
    assert np.abs(np.asarray(picture, dtype=float).mean(axis=(0, 1)) - (200, 60, 20)).max() < 4
    dataset = ImageFolderDataset(tmp_path, SIZE, bad_images="fail")
    assert dataset.scan() == {"upscaled": 0}
    assert dataset[0][0].shape == (3, SIZE, SIZE)
    assert file_sizes(dataset).single_size == (100, 60)  # the summary reads its header too


def test_an_image_too_big_to_shrink_says_to_save_a_smaller_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60)  # 100x60 JPEG: 13x8 = 104 pixels even at 1/8
    _photo(tmp_path / "big.jpg", (100, 60))
    _photo(tmp_path / "big.png", (100, 60))  # a PNG decoder cannot shrink while decoding
    for name in ("big.jpg", "big.png"):
        with pytest.raises(BadImageError, match="huge.*save a smaller copy") as caught:
            read_training_image(tmp_path / name, SIZE, channels=3)
        assert caught.value.reason == "huge" and "replace or delete" not in str(caught.value)


def test_one_image_is_counted_in_the_singular(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "a" / "0.png")
    dataset = ImageFolderDataset(tmp_path, SIZE)
    with caplog.at_level(logging.INFO):
        check_bad_images([dataset], "skip")
    assert f"checked 1 image file of {tmp_path}: all usable" in caplog.text

    Image.new("RGB", (2, 2)).save(tmp_path / "a" / "0.png")  # now tiny
    tiny = ImageFolderDataset(tmp_path, SIZE)
    with caplog.at_level(logging.INFO):
        check_bad_images([tiny], "skip")
    assert f"checked 1 image file of {tmp_path}: skipping 1 bad file (1 tiny)" in caplog.text
    with pytest.raises(ValueError, match=r"the one image file of --data .* cannot be used \(1 tiny\): it has a"):
        refuse_all_bad(tiny, str(tmp_path))


@pytest.mark.parametrize("limit", [3600, 1000])
def test_a_captioned_jpeg_over_the_pixel_limit_trains_decoded_shrunk(tmp_path, monkeypatch, limit):
    # Captioned folders (and manifests, shards) skipped such photos as "huge" while class folders trained on them.
    from nextscale.data.caption_folders import CaptionFolderDataset

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    _photo(tmp_path / "big.jpg", (100, 60))
    (tmp_path / "big.txt").write_text("an orange photo\n")
    dataset = CaptionFolderDataset(tmp_path, SIZE)
    image, caption = dataset[0]
    assert image.shape == (3, SIZE, SIZE) and caption == "an orange photo"
    assert not any(dataset.skipped.values())


def test_the_summary_reads_headers_from_every_part_of_the_sorted_list(tmp_path):
    # With 65-127 files the stride was 1, so the summary read the first 64: the first classes only, and a 1000x300
    # panorama in the last class was never mentioned.
    for name, count, size in (("a", 60, (16, 16)), ("b", 60, (16, 16)), ("c", 7, (100, 30))):
        (tmp_path / name).mkdir()
        for index in range(count):
            Image.new("RGB", size).save(tmp_path / name / f"{index:03d}.png")
    sizes = file_sizes(ImageFolderDataset(tmp_path, SIZE), limit=64)
    assert sizes.checked == 64 and sizes.total == 127
    assert (100, 30) in sizes.sizes
