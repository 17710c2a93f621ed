import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from nextscale.data.caption_base import SKIP_REASONS
from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset
from nextscale.data.captions import open_caption_dataset
from nextscale.data.transforms import pil_to_tensor

SIZE = 16
CAPTIONS = {"red": ["a red square"], "green": ["a green square", "a grassy square"], "blue": ["a blue square"]}
COLOURS = {"red": (200, 10, 10), "green": (10, 200, 10), "blue": (10, 10, 200)}


def _image(name: str) -> Image.Image:
    """A SIZE x SIZE RGB picture with a gradient, so a wrong crop or a wrong file shows."""
    ramp = np.arange(SIZE, dtype=np.uint8)[None, :, None] * 8
    pixels = np.broadcast_to(np.array(COLOURS[name], dtype=np.uint8), (SIZE, SIZE, 3)) // 2 + ramp
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


def _png_bytes(name: str) -> bytes:
    buffer = io.BytesIO()
    _image(name).save(buffer, format="PNG")
    return buffer.getvalue()


def _expected(name: str) -> torch.Tensor:
    return pil_to_tensor(_image(name), channels=3)


def _check_round_trip(dataset) -> None:
    """Every sample's image is the file's pixels and its caption one of the file's captions."""
    assert len(dataset) == len(CAPTIONS)
    assert sum(dataset.skipped.values()) == 0
    seen = set()
    for index in range(len(dataset)):
        image, caption = dataset[index]
        name = next(name for name, texts in CAPTIONS.items() if caption in texts)
        assert image.shape == (3, SIZE, SIZE)
        torch.testing.assert_close(image, _expected(name), rtol=0, atol=0)
        seen.add(name)
    assert seen == set(CAPTIONS)


def _write_folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    for number, (name, texts) in enumerate(CAPTIONS.items()):
        folder = root / "sub" if number == 2 else root
        (folder / f"{name}.png").write_bytes(_png_bytes(name))
        (folder / f"{name}.txt").write_text("\n".join(texts) + "\n\n")  # blank lines are not captions
    return root


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_folder_round_trip(tmp_path):
    _check_round_trip(CaptionFolderDataset(_write_folder(tmp_path / "data"), SIZE))


def test_jsonl_manifest_round_trip(tmp_path):
    (tmp_path / "images").mkdir()
    lines = []
    for name, texts in CAPTIONS.items():
        (tmp_path / "images" / f"{name}.png").write_bytes(_png_bytes(name))
        lines.append(json.dumps({"image": f"images/{name}.png", "caption": texts if len(texts) > 1 else texts[0]}))
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE)
    _check_round_trip(dataset)
    assert dataset.samples[1].captions == tuple(CAPTIONS["green"])


def test_csv_manifest_round_trip(tmp_path):
    rows = ["image,caption"]
    for name, texts in CAPTIONS.items():
        (tmp_path / f"{name}.png").write_bytes(_png_bytes(name))
        rows.append(f'{name}.png,"{texts[0]}"')
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    _check_round_trip(CaptionManifestDataset(tmp_path / "captions.csv", SIZE))


def test_csv_manifest_needs_its_columns(tmp_path):
    (tmp_path / "list.csv").write_text("file,text\nred.png,a red square\n")
    with pytest.raises(ValueError, match="'image' and 'caption' columns"):
        CaptionManifestDataset(tmp_path / "list.csv", SIZE)


def test_tar_shards_round_trip(tmp_path):
    for shard_index, names in enumerate((["red", "green"], ["blue"])):
        with tarfile.open(tmp_path / f"shard-{shard_index:05d}.tar", "w") as tar:
            for name in names:
                key = f"part/{name}" if name == "green" else name  # keys may hold folders
                _add_member(tar, f"{key}.png", _png_bytes(name))
                _add_member(tar, f"{key}.txt", "\n".join(CAPTIONS[name]).encode())
                _add_member(tar, f"{key}.json", b"{}")  # other members are ignored
    dataset = CaptionShardDataset(tmp_path, SIZE)
    assert len(dataset.shards) == 2
    _check_round_trip(dataset)
    assert dataset.samples[1].name.endswith("shard-00000.tar:part/green")


def test_caption_choice_is_seeded_per_epoch_and_index(tmp_path):
    root = _write_folder(tmp_path / "data")
    green = next(i for i, sample in enumerate(CaptionFolderDataset(root, SIZE).samples) if len(sample.captions) > 1)

    def captions(seed: int, epochs: range) -> list[str]:
        dataset = CaptionFolderDataset(root, SIZE, seed=seed)
        chosen = []
        for epoch in epochs:
            dataset.set_epoch(epoch)
            chosen.append(dataset[green][1])
        return chosen

    assert captions(0, range(20)) == captions(0, range(20))
    assert set(captions(0, range(20))) == set(CAPTIONS["green"])  # both captions are used across epochs
    assert captions(0, range(20)) != captions(1, range(20))


def test_folder_skips_and_counts_bad_samples(tmp_path, caplog):
    root = _write_folder(tmp_path / "data")
    (root / "nocaption.png").write_bytes(_png_bytes("red"))
    (root / "empty.png").write_bytes(_png_bytes("red"))
    (root / "empty.txt").write_text("  \n\n")
    (root / "corrupt.png").write_bytes(b"this is not a png")
    (root / "corrupt.txt").write_text("a broken file")
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionFolderDataset(root, SIZE)
    assert len(dataset) == 3
    expected = dict.fromkeys(SKIP_REASONS, 0) | {"missing_caption": 1, "empty_caption": 1, "corrupt_image": 1}
    assert dataset.skipped == expected
    summary = [record.getMessage() for record in caplog.records]
    assert len(summary) == 1
    assert "skipped 3 of 6 samples" in summary[0] and "1 missing caption" in summary[0]
    assert "nocaption.png" in summary[0] and "corrupt.png" in summary[0]
    _check_round_trip_allowing_skips(dataset)


def _check_round_trip_allowing_skips(dataset) -> None:
    for index in range(len(dataset)):
        image, caption = dataset[index]
        name = next(name for name, texts in CAPTIONS.items() if caption in texts)
        torch.testing.assert_close(image, _expected(name), rtol=0, atol=0)


def test_manifest_skips_and_counts_bad_records(tmp_path):
    for name in CAPTIONS:
        (tmp_path / f"{name}.png").write_bytes(_png_bytes(name))
    lines = [
        json.dumps({"image": "red.png", "caption": "a red square"}),
        json.dumps({"image": "missing.png", "caption": "gone"}),
        "{not json",
        json.dumps({"image": "green.png"}),
        json.dumps({"image": "blue.png", "caption": []}),
        json.dumps({"image": "blue.png", "caption": 7}),
    ]
    (tmp_path / "captions.jsonl").write_text("\n".join(lines) + "\n")
    dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", SIZE)
    assert len(dataset) == 1
    assert dataset.skipped == dict.fromkeys(SKIP_REASONS, 0) | {
        "missing_image": 1,
        "missing_caption": 1,
        "empty_caption": 1,
        "bad_record": 2,
    }


def test_shards_skip_and_count_unpaired_members(tmp_path):
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        _add_member(tar, "red.png", _png_bytes("red"))
        _add_member(tar, "red.txt", b"a red square")
        _add_member(tar, "orphan.png", _png_bytes("blue"))
        _add_member(tar, "lonely.txt", b"an image that is not there")
        _add_member(tar, "bad.png", b"\x89PNG broken")
        _add_member(tar, "bad.txt", b"a broken image")
    dataset = CaptionShardDataset(tmp_path / "shard.tar", SIZE)
    assert len(dataset) == 1
    assert (dataset.skipped["missing_caption"], dataset.skipped["missing_image"]) == (1, 1)
    assert dataset.skipped["corrupt_image"] == 1
    assert dataset[0][1] == "a red square"


def test_compressed_shard_is_refused(tmp_path):
    with tarfile.open(tmp_path / "shard.tar", "w:gz") as tar:
        _add_member(tar, "red.png", _png_bytes("red"))
    with pytest.raises(ValueError, match="gzip-compressed"):
        CaptionShardDataset(tmp_path / "shard.tar", SIZE)


def test_truncated_image_is_skipped_at_access_and_counted(tmp_path):
    root = _write_folder(tmp_path / "data")
    data = _png_bytes("red")
    (root / "red.png").write_bytes(data[: len(data) // 2])  # header intact, pixels cut off
    dataset = CaptionFolderDataset(root, SIZE)
    assert len(dataset) == 3 and dataset.skipped["corrupt_image"] == 0
    broken = next(i for i, sample in enumerate(dataset.samples) if sample.name.endswith("red.png"))
    image, caption = dataset[broken]  # the next readable sample stands in
    assert caption not in CAPTIONS["red"] and image.shape == (3, SIZE, SIZE)
    dataset[broken]
    assert dataset.skipped["corrupt_image"] == 1  # counted once per file


def test_nothing_usable_raises(tmp_path):
    (tmp_path / "red.png").write_bytes(_png_bytes("red"))
    with pytest.raises(ValueError, match="no usable image-caption pairs .*1 missing caption"):
        CaptionFolderDataset(tmp_path, SIZE)


def test_open_caption_dataset_picks_the_source(tmp_path):
    folder = _write_folder(tmp_path / "folder")
    assert isinstance(open_caption_dataset(folder, SIZE), CaptionFolderDataset)
    (tmp_path / "manifest").mkdir()
    (tmp_path / "manifest" / "red.png").write_bytes(_png_bytes("red"))
    (tmp_path / "manifest" / "captions.jsonl").write_text(json.dumps({"image": "red.png", "caption": "r"}) + "\n")
    assert isinstance(open_caption_dataset(tmp_path / "manifest", SIZE), CaptionManifestDataset)
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "a.tar", "w") as tar:
        _add_member(tar, "red.png", _png_bytes("red"))
        _add_member(tar, "red.txt", b"r")
    assert isinstance(open_caption_dataset(tmp_path / "shards", SIZE), CaptionShardDataset)
    assert isinstance(open_caption_dataset(tmp_path / "shards" / "a.tar", SIZE), CaptionShardDataset)
    with pytest.raises(FileNotFoundError):
        open_caption_dataset(tmp_path / "nowhere", SIZE)


def test_grayscale_resize_and_batching(tmp_path):
    dataset = CaptionFolderDataset(_write_folder(tmp_path / "data"), 8, channels=1, train=False)
    images, captions = next(iter(DataLoader(dataset, batch_size=3)))
    assert images.shape == (3, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert len(captions) == 3 and all(isinstance(text, str) for text in captions)  # default_collate: a tuple


def test_folder_pairs_upper_case_caption_files_and_follows_linked_folders(tmp_path):
    """``photo.TXT`` captions ``photo.JPG`` (cameras and Windows tools write upper-case suffixes); a linked
    sub-folder is read; ``name.txt`` wins over ``name.TXT`` when both exist."""
    root = tmp_path / "data"
    root.mkdir()
    _image("red").save(root / "a.PNG")
    (root / "a.TXT").write_text("upper case caption\n")
    _image("green").save(root / "b.png")
    (root / "b.txt").write_text("lower\n")
    (root / "b.TXT").write_text("ignored\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _image("blue").save(elsewhere / "c.png")
    (elsewhere / "c.txt").write_text("linked\n")
    (root / "more").symlink_to(elsewhere, target_is_directory=True)
    dataset = CaptionFolderDataset(root, size=8, train=False)
    assert [dataset.read(index)[1] for index in range(len(dataset))] == [
        ("upper case caption",),
        ("lower",),
        ("linked",),
    ]
