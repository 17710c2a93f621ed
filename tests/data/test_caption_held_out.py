"""The held-out split carved from captioned data without val/: disjoint, keyed on names (not listing order or
location), the same from every source spelling, and nothing held out of a single pair."""

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nextscale.data.caption_folders as caption_folders
from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.captions import open_caption_splits
from nextscale.data.folders import carve_held_out_by_name, name_draw
from nextscale.training.data_specs import build_datasets

SIZE = 8
NAMES = ["a", "b", "c", "sub/d", "sub/e", "f"]


def png(colour: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((SIZE, SIZE, 3), colour, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pairs(root: Path, names: list[str]) -> Path:
    for index, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{name}.png").write_bytes(png(20 * index))
        (root / f"{name}.txt").write_text(f"picture {name}\n")
    return root


def relative_names(dataset, root: Path) -> list[str]:
    return [Path(sample.name).relative_to(root).as_posix() for sample in dataset.samples]


def test_the_name_rule_is_fixed_by_names_alone():
    # A golden value: Python's hash() (salted per process) or another hash would differ between DDP ranks or runs.
    assert name_draw("a.png") == pytest.approx(0.9987373514963229, abs=1e-15)
    names = [f"img{i:03d}.png" for i in range(200)]
    held = [names[i] for i in carve_held_out_by_name(names)]
    assert 0 < len(held) < 30  # about 5 %
    shuffled = random.Random(1).sample(names, len(names))
    assert sorted(shuffled[i] for i in carve_held_out_by_name(shuffled)) == sorted(held)  # listing order: no effect
    grown = names + [f"new{i:03d}.png" for i in range(100)]
    assert [grown[i] for i in carve_held_out_by_name(grown) if i < 200] == held  # old images stay on their side
    assert carve_held_out_by_name(["only.png"]) == [] and len(carve_held_out_by_name(["x", "y"])) == 1
    assert len(carve_held_out_by_name(["x", "y"], fraction=0.99)) == 1  # never all of them


def test_a_caption_folder_without_val_gives_a_disjoint_center_cropped_split(tmp_path):
    root = write_pairs(tmp_path / "photos", NAMES)
    train, held_out = open_caption_splits(root, SIZE)
    train_names, held_names = relative_names(train, root), relative_names(held_out, root)
    assert len(held_names) >= 1 and set(train_names).isdisjoint(held_names)
    assert sorted(train_names + held_names) == sorted(f"{name}.png" for name in NAMES)
    assert train.transform.train and not held_out.transform.train
    assert train.split_note == held_out.split_note and f"of the 6 image-caption pairs of {root}" in train.split_note
    assert "carved out" in held_out.origin and "held-out image-caption pair" in train.origin
    # tokenize --split val|train reads the same two sides
    assert relative_names(open_caption_splits(root, SIZE, split="val", train=False)[0], root) == held_names
    assert relative_names(open_caption_splits(root, SIZE, split="train", train=False)[0], root) == train_names
    assert held_out[0][0].shape == (3, SIZE, SIZE)


def test_the_split_ignores_listing_order_and_where_the_folder_lies(tmp_path, monkeypatch):
    root = write_pairs(tmp_path / "photos", NAMES)
    held = relative_names(open_caption_splits(root, SIZE)[1], root)
    moved = shutil.copytree(root, tmp_path / "elsewhere" / "copy")  # another machine's mount point
    assert relative_names(open_caption_splits(moved, SIZE)[1], moved) == held
    sorted_files = caption_folders.visible_files
    monkeypatch.setattr(caption_folders, "visible_files", lambda folder: sorted_files(folder)[::-1])
    assert sorted(relative_names(open_caption_splits(root, SIZE)[1], root)) == sorted(held)


def test_a_single_pair_holds_nothing_out_and_val_of_it_is_refused(tmp_path):
    root = write_pairs(tmp_path / "one", ["a"])
    train, held_out = open_caption_splits(root, SIZE)
    assert len(train) == 1 and held_out is None
    assert train.split_note.startswith("held-out: none, so no held-out evaluation")
    with pytest.raises(ValueError, match="too few usable image-caption pairs to hold any out"):
        build_datasets(f"captions:{root}", SIZE, 3, split="val")


def test_a_folder_its_manifest_and_its_shards_hold_out_the_same_images(tmp_path):
    root = write_pairs(tmp_path / "photos", NAMES)
    folder_held = relative_names(open_caption_splits(root, SIZE)[1], root)
    # The manifest spells paths its own way ("./a.png"): the same images are held out as from the folder.
    lines = [json.dumps({"image": f"./{name}.png", "caption": name}) for name in NAMES]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    manifest_held = [
        Path(sample.name).relative_to(root).as_posix() for sample in open_caption_splits(root, SIZE)[1].samples
    ]
    assert manifest_held == folder_held
    # Shards: the key decides (the folder's path without extension), not which shard holds it.
    one, two = tmp_path / "one", tmp_path / "two"
    for folder, groups in ((one, [NAMES]), (two, [NAMES[:3], NAMES[3:]])):
        folder.mkdir()
        for number, group in enumerate(groups):
            with tarfile.open(folder / f"shard-{number:05d}.tar", "w") as tar:
                for name in group:
                    for suffix, data in ((".png", (root / f"{name}.png").read_bytes()), (".txt", name.encode())):
                        info = tarfile.TarInfo(name + suffix)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
    keys = [[sample.name.rpartition(":")[2] for sample in open_caption_splits(f, SIZE)[1].samples] for f in (one, two)]
    assert keys[0] == keys[1] == [name.removesuffix(".png") for name in folder_held]


def test_carve_false_reads_the_whole_source_as_before(tmp_path):
    root = write_pairs(tmp_path / "photos", NAMES)
    whole, none = build_datasets(f"captions:{root}", SIZE, 3, carve_captions=False)
    assert none is None and len(whole) == len(CaptionFolderDataset(root, SIZE)) == len(NAMES)
    assert whole.split_note is None
