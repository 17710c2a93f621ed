"""Hugging Face imagefolder captions: ``metadata.jsonl``/``.csv`` with ``file_name`` and ``text``, read by
``captions:DIR`` like our ``captions.jsonl``/``.csv``."""

import json
from pathlib import Path

import pytest
from PIL import Image

from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.captions import open_caption_dataset

SIZE = 8


def _images(folder: Path, *names: str) -> None:
    for number, name in enumerate(names):
        Image.new("RGB", (SIZE, SIZE), (40 * number, 0, 0)).save(folder / name)


def _pairs(dataset) -> dict[str, tuple[str, ...]]:
    return {Path(sample.name).name: sample.captions for sample in dataset.samples}


def test_metadata_jsonl_with_file_name_and_text_is_read(tmp_path):
    _images(tmp_path, "a.png", "b.png")
    records = [{"file_name": "a.png", "text": "a red dot"}, {"file_name": "b.png", "text": ["a dark", "a black"]}]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert isinstance(dataset, CaptionManifestDataset) and dataset.manifest.name == "metadata.jsonl"
    assert _pairs(dataset) == {"a.png": ("a red dot",), "b.png": ("a dark", "a black")}
    assert sum(dataset.skipped.values()) == 0


def test_metadata_csv_with_file_name_and_text_is_read(tmp_path):
    _images(tmp_path, "a.png", "b.png")
    (tmp_path / "metadata.csv").write_text("file_name,text,label\na.png,a red dot,1\nb.png,a black dot,0\n")
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert dataset.manifest.name == "metadata.csv"
    assert _pairs(dataset) == {"a.png": ("a red dot",), "b.png": ("a black dot",)}


def test_keys_mix_between_our_names_and_hugging_faces(tmp_path):
    _images(tmp_path, "a.png", "b.png")
    lines = [{"image": "a.png", "text": "first"}, {"file_name": "b.png", "caption": "second"}]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert _pairs(dataset) == {"a.png": ("first",), "b.png": ("second",)}


def test_a_record_without_an_image_key_is_one_line_naming_the_keys(tmp_path):
    _images(tmp_path, "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"path": "a.png", "prompt": "a red dot"}) + "\n")
    with pytest.raises(ValueError) as error:
        open_caption_dataset(tmp_path, SIZE, check_images=False)
    message = str(error.value)
    assert "\n" not in message and "metadata.jsonl:1" in message
    assert "'path', 'prompt'" in message  # the keys found
    assert all(f"'{key}'" in message for key in ("image", "file_name", "caption", "text"))  # the keys accepted


def test_after_a_keyed_record_one_without_an_image_key_is_one_bad_record(tmp_path):
    """Only records that start the file without an image key stop it (the keys are named another way); a stray
    line among good ones is skipped and counted, as a malformed line is."""
    _images(tmp_path, "a.png", "b.png")
    lines = [{"file_name": "a.png", "text": "a red dot"}, {"path": "b.png"}, {"file_name": "b.png", "text": "dark"}]
    (tmp_path / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert _pairs(dataset) == {"a.png": ("a red dot",), "b.png": ("dark",)}
    assert dataset.skipped["bad_record"] == 1


def test_a_csv_without_the_columns_names_both_spellings(tmp_path):
    _images(tmp_path, "a.png")
    (tmp_path / "metadata.csv").write_text("path,prompt\na.png,a red dot\n")
    with pytest.raises(ValueError) as error:
        open_caption_dataset(tmp_path, SIZE, check_images=False)
    message = str(error.value)
    assert "\n" not in message and "'file_name' and 'text'" in message and "['path', 'prompt']" in message


def test_captions_jsonl_wins_over_metadata_jsonl(tmp_path):
    # The existing rule for two manifests in one folder: the first of the names in order is read, the other not.
    _images(tmp_path, "a.png", "b.png")
    (tmp_path / "captions.jsonl").write_text(
        "".join(json.dumps({"image": name, "caption": f"ours {name}"}) + "\n" for name in ("a.png", "b.png"))
    )
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"wrong": "keys"}) + "\n")
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert dataset.manifest.name == "captions.jsonl"
    assert _pairs(dataset) == {"a.png": ("ours a.png",), "b.png": ("ours b.png",)}


def test_a_sub_folder_with_metadata_jsonl_is_another_data_set(tmp_path):
    _images(tmp_path, "a.png")
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.png", "caption": "top"}) + "\n")
    (tmp_path / "other").mkdir()
    _images(tmp_path / "other", "b.png")
    (tmp_path / "other" / "metadata.jsonl").write_text(json.dumps({"file_name": "b.png", "text": "inner"}) + "\n")
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert _pairs(dataset) == {"a.png": ("top",)}
    assert dataset.skipped["unlisted_image"] == 0
