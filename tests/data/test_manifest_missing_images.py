"""Images beside a caption manifest that no line names are counted and named (as a caption folder counts an image
without its .txt), and stop ``bad_images="fail"``; an images/ folder passed without its manifest names it."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.captions import open_caption_dataset

SIZE = 16


def _images(folder, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full((SIZE, SIZE), index * 20, np.uint8)).save(folder / f"{index:02d}.png")
    return [f"{index:02d}.png" for index in range(count)]


def _csv(root, names: list[str]) -> None:
    (root / "captions.csv").write_text("image,caption\n" + "".join(f"images/{name},item {name}\n" for name in names))


def test_images_without_a_csv_row_are_counted_and_named(tmp_path, caplog):
    names = _images(tmp_path / "images", 10)
    _csv(tmp_path, names[:5])
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = open_caption_dataset(tmp_path, SIZE)
    assert len(dataset) == 5 and dataset.skipped["unlisted_image"] == 5
    (message,) = [record.getMessage() for record in caplog.records]
    assert "skipped 5 of 10 samples: 5 images without a manifest line" in message
    assert all(f"images/{name}" in message for name in names[5:8]) and "images/09.png" not in message  # a few named


def test_bad_images_fail_stops_at_an_unlisted_image(tmp_path):
    names = _images(tmp_path / "images", 4)
    _csv(tmp_path, names[:3])
    with pytest.raises(ValueError, match=r"1 of 4 samples cannot be used: 1 image without a manifest line \(.*03\.png"):
        open_caption_dataset(tmp_path, SIZE, bad_images="fail")


def test_every_spelling_of_a_listed_image_counts_as_listed(tmp_path):
    names = _images(tmp_path / "images", 3)
    spellings = [f"images/{names[0]}", f"./images/../images/{names[1]}", str(tmp_path / "images" / names[2])]
    lines = [json.dumps({"image": image, "caption": "an item"}) for image in spellings]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE, bad_images="fail")
    assert len(dataset) == 3 and dataset.skipped["unlisted_image"] == 0


def test_a_linked_folder_whose_lines_give_the_real_paths_lists_its_images(tmp_path):
    real = tmp_path / "real"
    names = _images(real / "images", 2)
    lines = [json.dumps({"image": str(real / "images" / name), "caption": "an item"}) for name in names]
    (real / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "link").symlink_to(real)
    dataset = CaptionManifestDataset(tmp_path / "link" / "captions.jsonl", SIZE, bad_images="fail")
    assert len(dataset) == 2 and dataset.skipped["unlisted_image"] == 0


def test_a_sub_folder_with_its_own_manifest_is_not_counted(tmp_path):
    _csv(tmp_path, _images(tmp_path / "images", 2))
    _csv(tmp_path / "val", _images(tmp_path / "val" / "images", 3))
    dataset = CaptionManifestDataset(tmp_path / "captions.csv", SIZE, bad_images="fail")
    assert len(dataset) == 2 and dataset.skipped["unlisted_image"] == 0


@pytest.mark.parametrize("bad_images", ["skip", "fail"])
def test_the_images_folder_of_a_manifest_names_the_manifest(tmp_path, bad_images):
    _csv(tmp_path, _images(tmp_path / "images", 3))
    with pytest.raises(ValueError) as caught:
        open_caption_dataset(tmp_path / "images", SIZE, bad_images=bad_images)
    message = str(caught.value)
    assert f"one folder up, in {tmp_path / 'captions.csv'}: pass captions:{tmp_path}" in message
    assert "docstring" not in message


def test_a_folder_without_captions_lists_the_layouts(tmp_path):
    _images(tmp_path / "photos", 2)
    with pytest.raises(ValueError, match="same-name .txt captions, a captions.jsonl or captions.csv manifest, or"):
        open_caption_dataset(tmp_path / "photos", SIZE)
