"""The check for captioned data passed without ``captions:`` tells a webdataset shard from a stray ``.tar`` as the
caption reader does (``captions.holds_shards``, ``caption_shards.first_captioned_key``).

Before, any ``*.tar`` at a folder's root was a "shard": a caption folder with a backup ``.tar`` beside its images
was described as shards (``captions:`` reads its images), and a class folder with an archive holding some ``.txt``
file (no image + caption pair) was refused as captioned data.
"""

import logging
import tarfile

import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.captions import open_caption_dataset
from nextscale.training.caption_prefix_checks import captioned_data_in, holds_captions, note_unused_files

SIZE = 16


def image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE)).save(path)


def tar_of(path, members: dict[str, object]) -> None:
    """A plain .tar holding each file under its member name."""
    with tarfile.open(path, "w") as tar:
        for name, source in members.items():
            tar.add(source, arcname=name)


def test_a_backup_tar_beside_captioned_images_is_not_called_a_shard(tmp_path):
    image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a black square\n")
    tar_of(tmp_path / "backup.tar", {"a.png": tmp_path / "a.png"})  # an image, no caption: no shard

    assert captioned_data_in(tmp_path) == ".txt captions beside its images"
    assert isinstance(open_caption_dataset(tmp_path, SIZE), CaptionFolderDataset)  # what captions: reads agrees
    with pytest.raises(ValueError, match=rf"holds .txt captions beside its images, .*--data captions:{tmp_path} "):
        note_unused_files(tmp_path, str(tmp_path))


def test_only_real_shards_are_counted_beside_captioned_images(tmp_path):
    image(tmp_path / "src" / "b.png")
    (tmp_path / "src" / "b.txt").write_text("another square\n")
    (tmp_path / "data").mkdir()
    tar_of(tmp_path / "data" / "0.tar", {"b.png": tmp_path / "src" / "b.png", "b.txt": tmp_path / "src" / "b.txt"})
    tar_of(tmp_path / "data" / "backup.tar", {"b.png": tmp_path / "src" / "b.png"})
    image(tmp_path / "data" / "a.png")
    (tmp_path / "data" / "a.txt").write_text("a black square\n")

    assert captioned_data_in(tmp_path / "data") == "1 .tar shard"
    with pytest.raises(ValueError, match=r"holds both a webdataset shard, 0\.tar, and 1 images"):
        open_caption_dataset(tmp_path / "data", SIZE)  # captions: sees the same one shard


def test_an_archive_with_a_stray_txt_beside_one_class_is_named_not_refused(tmp_path, caplog):
    image(tmp_path / "cats" / "a.png")
    (tmp_path / "notes.txt").write_text("backup of cats/\n")
    tar_of(tmp_path / "backup.tar", {"cats/a.png": tmp_path / "cats" / "a.png", "notes.txt": tmp_path / "notes.txt"})
    (tmp_path / "notes.txt").unlink()

    assert not holds_captions(tmp_path)  # a .txt member, but no image + caption pair of one key
    with caplog.at_level(logging.WARNING, logger="nextscale"):
        note_unused_files(tmp_path, str(tmp_path))  # one class, trained as such; the archive is only named
    assert "backup.tar at its root holds no image captions and is not read" in caplog.text
