"""Checkpoints copied without their config.json (a forked run) tell from their recorded config whether the run
carved captioned data: one started before the split resumes on all of it, not refused or carved."""

import torch

from nextscale.training.checkpoint import checkpoint_path
from nextscale.training.data_specs import caption_split_record, carves_caption_held_out


def fork(run_dir, configs: dict) -> None:
    path = checkpoint_path(run_dir, 10)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": 10, "configs": configs, "models": {"m": {"w": torch.zeros(2)}}}, path)


def test_a_fork_of_a_run_started_before_the_split_does_not_carve(tmp_path):
    old = {"data": "captions:photos", "held_out": "none"}
    fork(tmp_path / "old", old)
    assert not carves_caption_held_out(tmp_path / "old")  # before: True, and the resume was refused
    fork(tmp_path / "new", {**old, **caption_split_record(True)})
    assert carves_caption_held_out(tmp_path / "new")
    path = checkpoint_path(tmp_path / "broken", 10)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")  # unreadable: the trainer's resume names it; here a new run carves
    assert carves_caption_held_out(tmp_path / "broken")
