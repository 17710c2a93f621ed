"""A run started before captioned data was split resumes on all of it; a run that carves records it and resumes
carving."""

import json

from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.config import config_differences
from nextscale.training.data_specs import (
    CAPTION_SPLIT_FIELD,
    caption_split_record,
    carves_caption_held_out,
)


def write_run(run_dir, config: dict, checkpoint: bool = True) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config))
    if checkpoint:
        path = checkpoint_path(run_dir, 10)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"listed by name only")


def test_an_old_run_keeps_its_whole_training_set_and_a_new_one_carves(tmp_path):
    old = {"data": "captions:photos", "held_out": "none", "train": {"lr": 1e-3}}
    write_run(tmp_path / "old", old)
    assert not carves_caption_held_out(tmp_path / "old")
    # Resumed without the carve, it records nothing new: the run-directory check sees the same config.
    assert config_differences(old, {**old, **caption_split_record(False)}) == []

    new = {**old, **caption_split_record(True)}
    write_run(tmp_path / "new", new)
    assert carves_caption_held_out(tmp_path / "new") and CAPTION_SPLIT_FIELD in new
    assert config_differences(new, {**old, **caption_split_record(True)}) == []

    write_run(tmp_path / "failed", old, checkpoint=False)  # a failed start binds nothing: start afresh, carving
    assert carves_caption_held_out(tmp_path / "failed") and carves_caption_held_out(tmp_path / "missing")
    assert carves_caption_held_out(None)
