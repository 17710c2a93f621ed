"""What a user's own caption data brings: encodings, repeated and orphaned entries, dotted shard names, tiny or
broken images under both bad-image policies, and train/val splits."""

import io
import json
import logging
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset
from nextscale.data.captions import open_caption_splits
from nextscale.data.summary import describe_data
from nextscale.training.data_specs import build_datasets

SIZE = 16


def png(colour: int = 100, side: int = SIZE, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), colour, dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_text_files_drop_a_byte_order_mark_and_name_a_caption_that_is_not_utf8(tmp_path, caplog):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "a.txt").write_bytes("\ufeffa red circle\n".encode())
    (tmp_path / "b.png").write_bytes(png())
    (tmp_path / "b.txt").write_bytes("un caf\xe9".encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionFolderDataset(tmp_path, SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a red circle",)]
    assert dataset.skipped["caption_not_utf8"] == 1 and "b.txt" in caplog.text and "caption not UTF-8" in caplog.text


def test_a_manifest_line_or_row_that_is_not_utf8_is_one_skipped_record(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.png").write_bytes(png())
    lines = [json.dumps({"image": "a.png", "caption": "a circle"}).encode(), '{"image": "b.png", "caption": "café"}']
    (tmp_path / "captions.jsonl").write_bytes(lines[0] + b"\n" + lines[1].encode("latin-1") + b"\n")
    jsonl = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE)
    assert len(jsonl) == 1 and jsonl.skipped["caption_not_utf8"] == 1
    (tmp_path / "captions.csv").write_bytes("image,caption\na.png,a circle\nb.png,café\n".encode("latin-1"))
    csv = CaptionManifestDataset(tmp_path / "captions.csv", SIZE)
    assert [sample.captions for sample in csv.samples] == [("a circle",)] and csv.skipped["caption_not_utf8"] == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_image_on_several_manifest_lines_is_one_sample_with_all_their_captions(tmp_path, suffix):
    for name in ("a", "b"):
        (tmp_path / f"{name}.png").write_bytes(png())
    rows = [("a.png", "a circle"), ("b.png", "a square"), ("a.png", "a round thing"), ("a.png", "a circle")]
    if suffix == ".csv":
        text = "image,caption\n" + "".join(f"{image},{caption}\n" for image, caption in rows)
    else:
        text = "".join(json.dumps({"image": image, "caption": caption}) + "\n" for image, caption in rows)
    (tmp_path / f"captions{suffix}").write_text(text)
    dataset = CaptionManifestDataset(tmp_path / f"captions{suffix}", SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a circle", "a round thing"), ("a square",)]


def test_a_caption_without_its_image_is_counted_and_bmp_images_are_read(tmp_path):
    (tmp_path / "a.bmp").write_bytes(png(fmt="BMP"))
    (tmp_path / "a.txt").write_text("a bitmap")
    (tmp_path / "orphan.txt").write_text("an image that was renamed")
    dataset = CaptionFolderDataset(tmp_path, SIZE)
    assert [sample.captions for sample in dataset.samples] == [("a bitmap",)]
    assert dataset.skipped["missing_image"] == 1 and dataset[0][0].shape == (3, SIZE, SIZE)


def test_shard_members_with_a_dot_before_the_extension_are_counted_unless_they_are_a_samples_parts(tmp_path):
    with tarfile.open(tmp_path / "a.tar", "w") as tar:
        add_member(tar, "photo.1.png", png())
        add_member(tar, "photo.1.txt", b"a photo")
        add_member(tar, "x.png", png())
        add_member(tar, "x.txt", b"an x")
        add_member(tar, "x.seg.png", png())  # a webdataset sample's other part: not a lost sample
    dataset = CaptionShardDataset(tmp_path / "a.tar", SIZE)
    assert len(dataset) == 1 and dataset.skipped["dotted_name"] == 1
    assert dataset.origin == str(tmp_path / "a.tar")
    assert str(tmp_path / "a.tar") in describe_data(dataset)[0]


def write_captioned(folder, names, side: int = SIZE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / f"{name}.png").write_bytes(png(side=side))
        (folder / f"{name}.txt").write_text(f"a picture called {name}")


def test_tiny_and_broken_images_are_skipped_and_named_or_stop_the_run(tmp_path):
    write_captioned(tmp_path, ["a", "b"])
    write_captioned(tmp_path, ["tiny"], side=2)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "broken.txt").write_text("a broken file")
    dataset = CaptionFolderDataset(tmp_path, 64)
    assert len(dataset) == 2 and (dataset.skipped["tiny_image"], dataset.skipped["corrupt_image"]) == (1, 1)
    assert {reason for _, reason in dataset.bad_files} == {"tiny", "corrupt"}
    with pytest.raises(
        ValueError, match=r"2 of 4 samples cannot be used: 1 corrupt image \(.*broken.png\).*--bad-images skip"
    ):
        CaptionFolderDataset(tmp_path, 64, bad_images="fail")


def test_a_truncated_image_is_no_stand_in_for_read_or_under_the_fail_policy(tmp_path):
    write_captioned(tmp_path, ["a", "b"])
    data = png(side=64)
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    skipping = CaptionFolderDataset(tmp_path, SIZE)
    with pytest.raises(ValueError, match="a.png"):
        skipping.read(0)
    assert skipping.decode_failures == [str(tmp_path / "a.png")]
    assert skipping.read(1)[1] == ("a picture called b",)
    with pytest.raises(ValueError, match="--bad-images skip"):
        CaptionFolderDataset(tmp_path, SIZE, bad_images="fail")[0]


def test_a_caption_folder_with_train_and_val_holds_both_splits(tmp_path):
    write_captioned(tmp_path / "train", ["a", "b", "c"])
    write_captioned(tmp_path / "val", ["d"])
    train, held_out = open_caption_splits(tmp_path, SIZE)
    assert (len(train), len(held_out)) == (3, 1) and not held_out.transform.train
    assert len(open_caption_splits(tmp_path, SIZE, split="val")[0]) == 1
    train, held_out = build_datasets(f"captions:{tmp_path}", SIZE, channels=3)
    assert (len(train), len(held_out)) == (3, 1)
    assert "held-out: 1 " in describe_data(train, held_out)[-1]
    # captions:DIR/train means DIR, as for image folders: its val/ sibling is the held-out split
    train, held_out = open_caption_splits(tmp_path / "train", SIZE)
    assert (len(train), len(held_out)) == (3, 1)
    assert len(open_caption_splits(tmp_path / "train", SIZE, split="val")[0]) == 1
    shutil.move(tmp_path / "val", tmp_path / "elsewhere")
    # Without val/ a split is carved from train/ itself (test_caption_held_out); carve=False reads it whole.
    carved, held = open_caption_splits(tmp_path / "train", SIZE)
    assert (len(carved), len(held)) == (2, 1)
    plain, none = open_caption_splits(tmp_path / "train", SIZE, carve=False)
    assert len(plain) == 3 and none is None
    with pytest.raises(ValueError, match="no held-out split"):
        open_caption_splits(tmp_path / "train", SIZE, split="val", carve=False)
    hint = describe_data(plain)[-1]
    assert "DIR/train and DIR/val" in hint and "--eval-data" in hint
    assert "--eval" not in describe_data(plain, held_out_flags="")[-1]


def test_a_class_folder_warns_about_loose_images_and_captions_it_does_not_use(tmp_path, caplog):
    write_captioned(tmp_path / "shapes", ["a", "b"])  # a class folder whose images have .txt captions
    (tmp_path / "loose.png").write_bytes(png())
    with caplog.at_level(logging.WARNING, logger="nextscale"):
        train, _ = build_datasets(str(tmp_path), SIZE, channels=3)
    warnings = [record.getMessage() for record in caplog.records if record.name == "nextscale.data"]
    assert len(train.classes) == 1
    assert any("1 image lies directly in" in line and "loose.png" in line for line in warnings)
    assert any(f"--data captions:{tmp_path}" in line for line in warnings)


def test_a_caption_folder_with_val_but_no_train_is_refused_not_trained_on(tmp_path):
    # Read recursively, DIR/val/d.png would be a training sample and nothing would be held out.
    write_captioned(tmp_path, ["a", "b", "c"])
    write_captioned(tmp_path / "val", ["d"])
    for split in (None, "train", "val"):
        with pytest.raises(ValueError, match=r"val/ sub-folder but no train/ one.*move the other image"):
            open_caption_splits(tmp_path, SIZE, split=split)
    with pytest.raises(ValueError, match="held-out pairs would be trained on"):
        build_datasets(f"captions:{tmp_path}", SIZE, channels=3)
    # A manifest lists its own images: a val/ folder beside it is not read through it.
    (tmp_path / "captions.jsonl").write_text(json.dumps({"image": "a.png", "caption": "a"}) + "\n")
    train, held_out = open_caption_splits(tmp_path, SIZE)
    assert [sample.name for sample in train.samples] == [str(tmp_path / "a.png")] and held_out is None


def test_a_repeated_caption_counts_once_in_every_source(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "a.txt").write_text("a cat\n a cat \na dog\na cat\n")
    assert CaptionFolderDataset(tmp_path, SIZE).samples[0].captions == ("a cat", "a dog")
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "caption": ["a cat", "a cat", "a dog"]}) + "\n")
    assert CaptionManifestDataset(manifest, SIZE).samples[0].captions == ("a cat", "a dog")
    # so the draw is even: "a cat" and "a dog" each about half the time over many epochs
    dataset = CaptionFolderDataset(tmp_path, SIZE)
    draws = []
    for epoch in range(200):
        dataset.set_epoch(epoch)
        draws.append(dataset[0][1])
    assert 70 < draws.count("a cat") < 130
