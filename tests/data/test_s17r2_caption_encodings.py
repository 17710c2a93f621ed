"""Caption text without a byte-order mark that is not UTF-8 text: UTF-16/32 of ASCII is valid UTF-8 byte for byte
("a\\x00 \\x00c\\x00..."), so it used to train as a caption full of NUL characters; it is counted as undecodable.
And a manifest named by a relative path still merges an image's relative and absolute spellings."""

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_base import decode_caption_text
from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset

SIZE = 16


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), 100, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_markless_utf16_or_utf32_is_refused_not_read_with_nul_characters(encoding):
    with pytest.raises(UnicodeDecodeError, match="NUL"):
        decode_caption_text("a cat".encode(encoding))
    assert decode_caption_text("a cat\n".encode("utf-8-sig")) == "a cat\n"  # UTF-8, with or without a mark


def test_a_folder_counts_a_markless_utf16_caption_as_undecodable(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.png").write_bytes(png())
    (tmp_path / "a.txt").write_text("a circle")
    (tmp_path / "b.txt").write_bytes("a dot".encode("utf-16-le"))
    dataset = CaptionFolderDataset(tmp_path, SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle",)]
    assert dataset.skipped["caption_not_utf8"] == 1


def test_a_shard_counts_a_markless_utf16_caption_as_undecodable(tmp_path):
    with tarfile.open(tmp_path / "0.tar", "w") as tar:
        for key, caption in (("a", b"a circle"), ("b", "a dot".encode("utf-16-le"))):
            for name, data in ((f"{key}.png", png()), (f"{key}.txt", caption)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataset = CaptionShardDataset(tmp_path / "0.tar", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle",)]
    assert dataset.skipped["caption_not_utf8"] == 1


def test_a_relative_manifest_merges_relative_and_absolute_spellings(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(png())
    records = [{"image": "a.png", "caption": "a circle"}, {"image": str(tmp_path / "data" / "a.png"), "caption": "a"}]
    (tmp_path / "data" / "captions.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    monkeypatch.chdir(tmp_path)
    dataset = CaptionManifestDataset("data/captions.jsonl", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle", "a")]
