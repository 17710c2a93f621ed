"""Captioned data passed without ``captions:`` (found by a first-hour user run, session 18).

``--data data/mine`` on a folder of ``captions.jsonl`` + ``images/`` read ``images/`` as one class named "images" and
ignored the manifest without a word, so ``tokenize`` wrote class tokens and ``train`` a one-class model; a folder of
``.tar`` shards or of images with ``.txt`` captions stopped at "no class sub-folders", with no word of the prefix.
Each now names what it found and ``--data captions:DIR``: refused where the folder cannot be meant as class folders,
named in a warning where it can (a labelled dataset may ship captions too). ``nextscale info`` reads data through
the same functions.
"""

import logging
import tarfile

import pytest
from PIL import Image

from nextscale.training.data_specs import build_datasets, note_unused_files

SIZE = 16


def image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (SIZE, SIZE)).save(path)


def test_a_captions_manifest_beside_its_one_images_folder_is_refused_with_the_prefix(tmp_path):
    image(tmp_path / "images" / "a.png")
    (tmp_path / "captions.jsonl").write_text('{"image": "images/a.png", "caption": "a black square"}\n')
    with pytest.raises(ValueError, match=rf"holds captions.jsonl, .* --data captions:{tmp_path} .*move captions"):
        note_unused_files(tmp_path, str(tmp_path))
    with pytest.raises(ValueError, match=f"--data captions:{tmp_path}"):  # --split all / --eval-data too
        build_datasets(str(tmp_path), SIZE, 3, split="all")


def test_shards_or_txt_captions_without_class_folders_name_the_prefix(tmp_path):
    image(tmp_path / "a.png")
    for split in ("train", "val"):  # img2dataset-style shards, train/ + val/
        (tmp_path / "shards" / split).mkdir(parents=True)
        with tarfile.open(tmp_path / "shards" / split / "0.tar", "w") as tar:
            tar.add(tmp_path / "a.png", arcname="a.png")
    with pytest.raises(ValueError, match=rf"holds 1 .tar shard, .*--data captions:{tmp_path / 'shards'} "):
        build_datasets(str(tmp_path / "shards"), SIZE, 3)
    image(tmp_path / "folder" / "train" / "a.png")
    (tmp_path / "folder" / "train" / "a.txt").write_text("a black square")
    image(tmp_path / "folder" / "val" / "b.png")
    with pytest.raises(ValueError, match=rf"holds .txt captions beside its images, .*captions:{tmp_path / 'folder'} "):
        build_datasets(str(tmp_path / "folder"), SIZE, 3)


def test_a_manifest_beside_several_classes_is_named_not_refused(tmp_path, caplog):
    from nextscale.training.caption_prefix_checks import captioned_data_in

    for name in ("cats", "dogs"):
        image(tmp_path / name / "a.png")
    (tmp_path / "captions.csv").write_text("image,caption\ncats/a.png,a cat\n")
    with caplog.at_level(logging.WARNING, logger="nextscale"):
        note_unused_files(tmp_path, str(tmp_path))
    assert "holds captions.csv, which is ignored here" in caplog.text and f"captions:{tmp_path}" in caplog.text
    assert captioned_data_in(tmp_path / "cats") is None


def test_info_on_a_manifest_folder_names_the_prefix(tmp_path):
    from nextscale.cli.info_paths import describe

    image(tmp_path / "images" / "a.png")
    (tmp_path / "captions.jsonl").write_text('{"image": "images/a.png", "caption": "a black square"}\n')
    with pytest.raises(ValueError, match=f"pass --data captions:{tmp_path} "):
        describe(str(tmp_path))
