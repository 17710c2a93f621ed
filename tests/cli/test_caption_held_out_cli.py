"""Captioned data without val/ gives up a held-out split in `train-tokenizer` (and `train`), a run started before
that split resumes on all of its data, and `tokenize --split all` reads every image of data without splits."""

import json

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.training import data_specs
from nextscale.training.data_specs import CAPTION_SPLIT_FIELD


def caption_folder(root, count: int = 24):
    root.mkdir(parents=True)
    for index in range(count):
        Image.new("RGB", (16, 16), (index * 10, 0, 255 - index * 10)).save(root / f"{index:02d}.png")
        (root / f"{index:02d}.txt").write_text(f"square number {index}")
    return root


def train_tokenizer(data: str, run_dir, steps: int) -> int:
    """Step ``steps`` of a 2-step run (1: stopped there by --max-steps, as an interruption would)."""
    argv = f"train-tokenizer --data {data} --preset tiny --resolution 16 --steps 2 --max-steps {steps} --batch-size 4"
    argv += f" --run-dir {run_dir} --no-progress --eval-every none --preview-every none --checkpoint-every 1"
    return main(argv.split())


def test_a_run_started_before_the_split_resumes_on_all_its_captions(tmp_path, monkeypatch):
    data = f"captions:{caption_folder(tmp_path / 'captions')}"
    # The run as older versions made it: no split, and no record of one in config.json.
    monkeypatch.setattr(data_specs, "carves_caption_held_out", lambda run_dir: False)
    assert train_tokenizer(data, tmp_path / "old", steps=1) == 0
    assert CAPTION_SPLIT_FIELD not in json.loads((tmp_path / "old" / "config.json").read_text())
    monkeypatch.undo()
    # Before the wiring, the resume carved 5 % off and its data position no longer fitted: refused.
    assert train_tokenizer(data, tmp_path / "old", steps=2) == 0
    assert CAPTION_SPLIT_FIELD not in json.loads((tmp_path / "old" / "config.json").read_text())


def test_split_all_reads_every_image_and_data_with_splits_must_name_one(tmp_path):
    captions = caption_folder(tmp_path / "captions")
    whole = data_specs.build_datasets(f"captions:{captions}", 16, 3, split="all")[0]
    train, held_out = data_specs.build_datasets(f"captions:{captions}", 16, 3)
    assert len(whole) == 24 == len(train) + len(held_out) and len(held_out) >= 1
    assert not whole.transform.train  # center crops, as every tokenized split

    classes = tmp_path / "classes"
    for label in ("a", "b"):
        caption_folder(classes / label, count=3)
    assert len(data_specs.build_datasets(str(classes), 16, 3, split="all")[0]) == 6

    split = tmp_path / "split"
    for part in ("train", "val"):
        caption_folder(split / part / "a", count=2)
    for spec in (str(split), f"captions:{split}"):
        with pytest.raises(ValueError, match="holds train/ and val/ sub-folders: name one split"):
            data_specs.build_datasets(spec, 16, 3, split="all")
    with pytest.raises(ValueError, match="has its own train and test splits"):
        data_specs.build_datasets("fashion-mnist", 16, 1, split="all")
