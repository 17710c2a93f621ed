"""The carved caption split does not depend on how the data is named: a manifest of absolute image paths named by
an absolute path, a relative one or a linked folder holds out the same images as the folder itself; ``DIR`` with
``train/`` alone is carved from ``train/`` (as ``DIR/train`` is); ``--split all`` of a ``DIR/train``-only folder
reads its classes (or its manifest) there."""

import json
import os
from pathlib import Path

from PIL import Image

from nextscale.data.captions import open_caption_splits
from nextscale.training.data_specs import build_datasets

SIZE = 8
COUNT = 40


def caption_folder(root: Path, count: int = COUNT) -> Path:
    root.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (SIZE, SIZE), (index * 5, 0, 0)).save(root / f"img{index:02d}.png")
        (root / f"img{index:02d}.txt").write_text(f"square {index}")
    return root


def held_names(path) -> list[str]:
    return sorted(Path(sample.name).name for sample in open_caption_splits(path, SIZE)[1].samples)


def test_a_manifest_of_absolute_paths_holds_out_the_same_images_however_it_is_named(tmp_path, monkeypatch):
    root = caption_folder(tmp_path / "photos")
    from_folder = held_names(root)
    lines = [json.dumps({"image": str(root / f"img{i:02d}.png"), "caption": f"square {i}"}) for i in range(COUNT)]
    manifest = root / "captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    (tmp_path / "linked").symlink_to(root)
    spellings = [manifest, tmp_path / "linked" / "captions.jsonl", Path("captions.jsonl")]
    monkeypatch.chdir(root)  # the relative spelling: before, its keys were absolute paths, another split
    assert [held_names(spelling) for spelling in spellings] == [from_folder] * 3


def test_a_folder_with_train_alone_is_carved_from_train(tmp_path):
    caption_folder(tmp_path / "data" / "train")
    train, held_out = open_caption_splits(tmp_path / "data", SIZE)  # before: no held-out split at all
    assert held_out is not None and len(train) + len(held_out) == COUNT
    assert held_names(tmp_path / "data") == held_names(tmp_path / "data" / "train")
    val = build_datasets(f"captions:{tmp_path / 'data'}", SIZE, 3, split="val")[0]  # before: refused
    assert sorted(Path(sample.name).name for sample in val.samples) == held_names(tmp_path / "data")
    whole = build_datasets(f"captions:{tmp_path / 'data'}", SIZE, 3, split="all")[0]
    assert len(whole) == COUNT


def test_split_all_of_a_folder_with_train_alone_reads_its_classes_and_its_manifest(tmp_path):
    classes = tmp_path / "classes"
    for label in ("cat", "dog"):
        caption_folder(classes / "train" / label, count=2)
    whole = build_datasets(str(classes), SIZE, 3, split="all")[0]
    assert whole.classes == ["cat", "dog"] and len(whole) == 4  # before: one class named "train"

    captions = tmp_path / "manifest"
    (captions / "train").mkdir(parents=True)
    for index in range(3):
        Image.new("RGB", (SIZE, SIZE)).save(captions / "train" / f"{index}.png")
    lines = [json.dumps({"image": f"{index}.png", "caption": f"black {index}"}) for index in range(3)]
    (captions / "train" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    whole = build_datasets(f"captions:{captions}", SIZE, 3, split="all")[0]
    assert [caption for _, caption in (whole[index] for index in range(3))] == ["black 0", "black 1", "black 2"]
    assert os.path.basename(whole.origin) == "captions.jsonl"
