"""`export --run RUN/checkpoints/step-N.pt` of a checkpoint the run no longer keeps names the steps it keeps,
not "step-N.pt/config.json not found: ... is not a training run directory"."""

from pathlib import Path

import pytest

from nextscale.cli.export import chosen_checkpoint
from nextscale.training.checkpoint import checkpoint_path


def test_a_pruned_checkpoint_file_names_the_kept_steps(tmp_path):
    kept = checkpoint_path(tmp_path, 3)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"")
    assert chosen_checkpoint(kept, None) == (tmp_path, kept)
    with pytest.raises(FileNotFoundError, match=r"keeps no checkpoint of step 5 \(steps kept: 3;"):
        chosen_checkpoint(checkpoint_path(tmp_path, 5), None)


def test_a_bare_checkpoint_name_given_from_inside_checkpoints_is_seen_as_one(tmp_path, monkeypatch):
    kept = checkpoint_path(tmp_path, 7)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"stand-in")
    monkeypatch.chdir(kept.parent)
    assert chosen_checkpoint(Path(kept.name), None) == (tmp_path, kept)
