"""A caption folder's ``.tar`` files are judged by what they hold: a stray archive beside images with ``.txt``
captions is ignored (with a warning), a folder of shards is read as shards, and a real shard beside captioned images
is refused in one line naming the shard and the fix."""

import gzip
import io
import logging

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset, first_captioned_key
from nextscale.data.captions import open_caption_dataset, open_caption_splits
from tiny_folders import write_tar

SIZE = 16


def png(colour: int = 100) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), colour, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def captioned_folder(root, count: int = 3) -> None:
    root.mkdir(exist_ok=True)
    for index in range(count):
        (root / f"img{index}.png").write_bytes(png(20 * index))
        (root / f"img{index}.txt").write_text(f"picture {index}\n")


def test_a_stray_tar_beside_captioned_images_is_ignored_and_named(tmp_path, caplog):
    captioned_folder(tmp_path)
    # A backup of a class folder: images without captions, so no webdataset sample.
    write_tar(tmp_path / "backup.tar", {"cats/a.png": png(), "cats/b.png": png(), "notes.md": b"old run"})
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert type(dataset) is CaptionFolderDataset
    assert len(dataset) == 3
    assert sorted(dataset.samples[i].captions[0] for i in range(3)) == ["picture 0", "picture 1", "picture 2"]
    assert "backup.tar" in caplog.text and "not a webdataset shard" in caplog.text


def test_a_compressed_or_broken_tar_beside_captioned_images_does_not_hide_them(tmp_path):
    captioned_folder(tmp_path)
    (tmp_path / "archive.tar").write_bytes(gzip.compress(b"not a tar at all"))
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert type(dataset) is CaptionFolderDataset and len(dataset) == 3


def test_a_folder_of_shards_is_still_read_as_shards(tmp_path):
    write_tar(tmp_path / "shard-0.tar", {"0001.png": png(), "0001.txt": b"a dot", "0002.png": png(), "0002.txt": b"b"})
    write_tar(tmp_path / "shard-1.tar", {"0003.png": png(), "0003.txt": b"a line"})
    (tmp_path / "preview.png").write_bytes(png())  # an image without a caption does not make it a caption folder
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert type(dataset) is CaptionShardDataset
    assert len(dataset) == 3


def test_a_shard_of_uncaptioned_images_alone_is_read_as_a_shard_whose_problems_are_counted(tmp_path):
    write_tar(tmp_path / "shard-0.tar", {"0001.png": png(), "0002.png": png()})
    with pytest.raises(ValueError, match=r"shard-0.tar holds no usable image-caption pairs \(2 missing captions"):
        open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert first_captioned_key(tmp_path / "shard-0.tar") is None


def test_a_shard_beside_captioned_images_is_refused_in_one_line_naming_it_and_the_fix(tmp_path):
    captioned_folder(tmp_path, count=5)
    write_tar(tmp_path / "extra.tar", {"x/0001.jpg": png(), "x/0001.txt": b"a dog"})
    with pytest.raises(ValueError) as caught:
        open_caption_dataset(tmp_path, SIZE, check_images=False)
    message = str(caught.value)
    assert "\n" not in message
    assert "extra.tar" in message and "5 images with .txt captions" in message and "img0.png" in message
    assert "move the shards or the images into a folder of their own" in message


def test_the_refusal_also_guards_the_held_out_check(tmp_path):
    captioned_folder(tmp_path)
    captioned_folder(tmp_path / "val", count=2)
    write_tar(tmp_path / "extra.tar", {"0001.png": png(), "0001.txt": b"a dog"})
    with pytest.raises(ValueError, match="extra.tar"):
        open_caption_splits(tmp_path, SIZE, check_images=False)


def test_a_stray_tar_still_lets_the_held_out_check_see_a_caption_folder(tmp_path):
    captioned_folder(tmp_path)
    captioned_folder(tmp_path / "val", count=2)
    write_tar(tmp_path / "backup.tar", {"readme.md": b"nothing to train on"})
    with pytest.raises(ValueError, match="no train/ one"):
        open_caption_splits(tmp_path, SIZE, check_images=False)


def test_a_manifest_wins_over_a_stray_tar(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "captions.csv").write_text("image,caption\na.png,a square\n")
    write_tar(tmp_path / "backup.tar", {"a.png": png(), "a.txt": b"a square"})
    dataset = open_caption_dataset(tmp_path, SIZE, check_images=False)
    assert type(dataset) is CaptionManifestDataset and len(dataset) == 1


def test_first_captioned_key_follows_the_webdataset_key_rule(tmp_path):
    shard = tmp_path / "s.tar"
    write_tar(shard, {"meta.json": b"{}", "a/0001.seg.png": png(), "a/0001.TXT": b"x", "a/0002.PNG": png()})
    assert first_captioned_key(shard) is None  # 0001's image is a dotted part; 0002 has no caption
    write_tar(shard, {"a/0002.PNG": png(), "a/0001.txt": b"x", "a/0002.txt": b"y"})
    assert first_captioned_key(shard) == "a/0002"
