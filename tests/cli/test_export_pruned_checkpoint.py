"""`export --run RUN/checkpoints/step-N.pt` of a checkpoint the run no longer keeps names the steps it keeps,
not "step-N.pt/config.json not found: ... is not a training run directory"."""

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
