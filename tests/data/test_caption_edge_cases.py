"""Caption sources at their edges: a manifest line without a caption for an image other lines caption, one image
named by two paths, a shard holding a member twice, and caption files in UTF-16."""

import io
import json
import logging
import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset

SIZE = 16


def png(colour: int = 100) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), colour, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def test_a_captionless_line_for_an_image_captioned_elsewhere_is_named_not_counted_as_skipped(tmp_path, caplog):
    for name in ("a", "b"):
        (tmp_path / f"{name}.png").write_bytes(png())
    records = [{"image": "a.png", "caption": "a circle"}, {"image": "a.png"}, {"image": "b.png", "caption": "a dot"}]
    write_jsonl(tmp_path / "captions.jsonl", records)
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle",), ("a dot",)]
    assert sum(dataset.skipped.values()) == 0 and "skipped" not in caplog.text
    assert dataset.uncaptioned_lines == [f"{tmp_path / 'captions.jsonl'}:2"]
    assert "captions.jsonl:2" in caplog.text and "trains with the captions of its other lines" in caplog.text


def test_an_image_listed_by_absolute_and_relative_path_is_one_sample(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png())
    records = [
        {"image": "images/a.png", "caption": "a circle"},
        {"image": str(tmp_path / "images" / "a.png"), "caption": "a round thing"},
        {"image": "images/../images/a.png", "caption": "a circle"},
    ]
    write_jsonl(tmp_path / "captions.jsonl", records)
    dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle", "a round thing")]


@pytest.mark.parametrize("repeated", ["a.png", "a.txt", "a.jpg"])
def test_a_shard_holding_a_sample_member_twice_is_refused_naming_shard_and_member(tmp_path, repeated):
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        add_member(tar, "a.png", png(50))
        add_member(tar, "a.txt", b"a dark square")
        add_member(tar, repeated, png(200) if repeated != "a.txt" else b"a light square")
    named = rf"shard {re.escape(str(tmp_path / 'shard.tar'))} holds two \w+ for sample 'a' \(a\.\w+ and {repeated}\)"
    with pytest.raises(ValueError, match=named):
        CaptionShardDataset(tmp_path / "shard.tar", SIZE)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be"])
def test_caption_files_are_read_in_utf8_or_utf16_with_a_byte_order_mark(tmp_path, encoding):
    text = "un café rouge\nune tasse\n"
    data = text.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):  # the plain codecs write no mark: add the one for their order
        data = "\ufeff".encode(encoding) + data
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.png").write_bytes(png())
    (tmp_path / "folder" / "a.txt").write_bytes(data)
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        add_member(tar, "a.png", png())
        add_member(tar, "a.txt", data)
    for dataset in (CaptionFolderDataset(tmp_path / "folder", SIZE), CaptionShardDataset(tmp_path / "shard.tar", SIZE)):
        assert [sample.captions for sample in dataset.samples] == [("un café rouge", "une tasse")]


def test_undecodable_caption_bytes_are_still_refused_naming_the_file(tmp_path, caplog):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "a.txt").write_text("a circle")
    (tmp_path / "b.png").write_bytes(png())
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe" + "un caf".encode("utf-16-le") + b"\x00\xd8")  # a lone surrogate
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionFolderDataset(tmp_path, SIZE)
    assert len(dataset) == 1 and dataset.skipped["caption_not_utf8"] == 1
    assert str(tmp_path / "b.txt") in caplog.text and len(caplog.records) == 1
