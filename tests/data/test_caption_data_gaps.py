"""Gaps in captioned data found in session 19, each reproduced on a made-up folder:

- ``tokenize --views N --split all`` was refused; it keeps the training crops a run on all of the data makes.
- Under ``--bad-images fail`` a manifest line without a caption, for an image other lines caption, went on.
- A one-class image folder with a stray ``.tar`` or ``captions.csv`` (no captions in it) was refused as captioned.
- ``check_tokens_beside_carve`` blamed "tokenized before captioned data gave up a split" when images had been
  removed from the folder since it was tokenized.
- ``a.1.png`` and ``a.2.png`` in one shard share the webdataset key ``a``: both were skipped, one named.
"""

import argparse
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli.tokenize import check_views
from nextscale.data.captions import CaptionManifestDataset, CaptionShardDataset
from nextscale.data.token_manifest import write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.data_specs import build_datasets, check_tokens_beside_carve
from tiny_folders import write_tar

SIZE = 16


def png(side: int = SIZE) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_views_of_all_the_captions_are_the_crops_of_a_run_on_all_of_them(tmp_path):
    data = tmp_path / "captioned"
    data.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):  # noisy and not square, so random crops differ
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(data / f"{index}.png")
        (data / f"{index}.txt").write_text(f"noise {index}\n")
    spec = f"captions:{data}"
    check_views(argparse.Namespace(views=2, split="all", data=spec))  # refused before: "--split all tokens are ..."
    # what `tokenize --split all --views 2 --seed 3` encodes, and what a run training on all of the data reads
    views, _ = build_datasets(spec, SIZE, 3, seed=3, split="all", random_crops=True)
    trained = build_datasets(spec, SIZE, 3, seed=3, carve_captions=False)[0]
    crops = []
    for epoch in range(2):
        views.set_epoch(epoch)
        trained.set_epoch(epoch)
        crops.append([views.read(index)[0] for index in range(3)])
        assert all(torch.equal(crops[-1][index], trained[index][0]) for index in range(3))
    assert any(not torch.equal(first, second) for first, second in zip(*crops))  # random crops, not center ones


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("captions.jsonl", '{"image": "a.png", "caption": "red"}\n{"image": "a.png"}\n', "captions.jsonl:2"),
        ("captions.csv", "image,caption\na.png,red\nb.png,dot\na.png,\n", "captions.csv:4"),
    ],
)
def test_a_captionless_line_of_a_captioned_image_stops_a_run_under_fail(tmp_path, name, text, line):
    for image in ("a", "b"):
        (tmp_path / f"{image}.png").write_bytes(png())
    manifest = tmp_path / name
    manifest.write_text(text + ('{"image": "b.png", "caption": "dot"}\n' if name.endswith("jsonl") else ""))
    with pytest.raises(ValueError, match=rf"^{manifest}: line {line} lists an image without a caption .*skip"):
        CaptionManifestDataset(manifest, SIZE, bad_images="fail")
    assert len(CaptionManifestDataset(manifest, SIZE)) == 2  # skip: named in a warning, the image trains


def one_class_folder(root):
    (root / "cats").mkdir(parents=True)
    for index in range(3):
        (root / "cats" / f"{index}.png").write_bytes(png())
    return root


def test_a_stray_file_beside_one_class_folder_is_named_not_refused(tmp_path, caplog):
    backup = one_class_folder(tmp_path / "backup")
    write_tar(backup / "cats-backup.tar", {f"cats/{index}.png": png() for index in range(3)})  # no captions
    table = one_class_folder(tmp_path / "table")
    (table / "captions.csv").write_text("name,notes\ncats,three pictures\n")  # not image + caption columns
    for root, stray in ((backup, "cats-backup.tar"), (table, "captions.csv")):
        with caplog.at_level(logging.WARNING, logger="nextscale"):
            train, held_out = build_datasets(str(root), SIZE, 3)
        assert len(train) + len(held_out) == 3 and train.classes == ["cats"]
        assert f"{stray} at its root holds no image captions" in caplog.text


def test_captions_beside_one_class_folder_are_still_refused_naming_the_file(tmp_path):
    manifest = one_class_folder(tmp_path / "manifest")
    (manifest / "captions.csv").write_text("image,caption\ncats/0.png,a red square\n")
    with pytest.raises(ValueError, match=r"holds captions.csv, .*captions:.* or move captions.csv out"):
        build_datasets(str(manifest), SIZE, 3)
    shards = one_class_folder(tmp_path / "shards")
    write_tar(shards / "part-0.tar", {"0.png": png(), "0.txt": b"a red square"})
    with pytest.raises(ValueError, match=r"holds 1 .tar shard, .* or move part-0.tar out"):
        build_datasets(str(shards), SIZE, 3)


def token_folder(path, source: str, count: int, split: str | None = None):
    path.mkdir()
    manifest = {"format": 1, "count": count, "total_tokens": 1, "scale_sides": [1], "vocab_size": 2}
    manifest.update(shards=[{"file": "shard-00000.safetensors", "count": count}], tokenizer={}, left_out=[])
    manifest.update(source=source, condition="text", **({"split": split} if split else {}))
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


class FixedTokenizer(MultiScaleVQVAE):
    def encode(self, images):
        return [torch.zeros(len(images), side * side, dtype=torch.long) for side in self.config.scale_sides]


def test_tokens_of_a_caption_folder_that_lost_images_say_so(tmp_path):
    root = tmp_path / "captions"
    root.mkdir()
    for index in range(30):
        Image.new("RGB", (8, 8), (index * 8, 0, 0)).save(root / f"{index:02d}.png")
        (root / f"{index:02d}.txt").write_text(f"square {index}")
    data = f"captions:{root}"
    train, held_out = build_datasets(data, 8, 3)
    side, whole = len(train), len(train) + len(held_out)
    # tokenized with --split train (recorded) before 2 training images were deleted
    with pytest.raises(ValueError, match=rf"holds {side + 2} images of its training side, .* now has {side} .*removed"):
        check_tokens_beside_carve(token_folder(tmp_path / "new", data, side + 2, split="train"), data, side, held_out)
    with pytest.raises(ValueError, match=rf"holds {side + 1} images of its training side, .*removed"):  # ":train"
        check_tokens_beside_carve(token_folder(tmp_path / "named", f"{data}:train", side + 1), data, side, held_out)
    tokenizer = FixedTokenizer(tiny()[0])
    out = tmp_path / "written"
    write_token_shards(tokenizer, train, out, batch_size=16, shard_size=64)
    write_manifest(tokenizer, len(train), out, 64, source=data, condition="text", split="train")  # as tokenize does
    for sample in train.samples[:2]:
        Path(sample.name).unlink()
    train_now, held_now = build_datasets(data, 8, 3)
    with pytest.raises(ValueError, match=rf"holds {side} images of its training side, .* now has {side - 2} "):
        check_tokens_beside_carve(out, data, len(train_now), held_now)
    # older tokens (no recorded split) of more images than the whole folder now holds
    with pytest.raises(ValueError, match=rf"holds {whole + 1} images of all of it, .* now has {whole} .*removed"):
        check_tokens_beside_carve(token_folder(tmp_path / "old", data, whole + 1), data, side, held_out)
    with pytest.raises(ValueError, match="tokenized before captioned data gave up a split"):  # all of it, as then
        check_tokens_beside_carve(token_folder(tmp_path / "all", data, whole), data, side, held_out)
    check_tokens_beside_carve(token_folder(tmp_path / "train", data, side, split="train"), data, side, held_out)


def test_two_dotted_shard_members_of_one_key_are_refused(tmp_path):
    members = {"a.1.png": png(), "a.1.txt": b"one", "a.2.png": png(), "a.2.txt": b"two", "b.png": png()}
    write_tar(tmp_path / "0.tar", {**members, "b.txt": b"bee"})
    with pytest.raises(ValueError, match=r"a.1.png and a.2.png share the webdataset key 'a' .*e.g. a_1.png"):
        CaptionShardDataset(tmp_path / "0.tar", SIZE)
    # a sample with its own image and caption keeps dotted members as its other webdataset parts
    parts = {"a.png": png(), "a.txt": b"a", "a.seg.png": png(), "a.depth.png": png()}
    write_tar(tmp_path / "parts.tar", parts)
    dataset = CaptionShardDataset(tmp_path / "parts.tar", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a",)]


def test_the_docs_say_how_a_dotted_name_keys_in_a_folder_and_in_a_shard():
    from nextscale.data import captions

    assert "``photo.2024.png`` is sample ``photo.2024`` in a caption folder" in captions.__doc__
    assert "part ``2024.png`` of sample ``photo`` in a shard" in captions.__doc__
