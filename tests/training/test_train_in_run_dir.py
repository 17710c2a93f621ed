"""``train_in_run_dir``: the launch steps both training commands share (parallelism check, process group, run lock)."""

from argparse import Namespace

import pytest

from nextscale.training.options import train_in_run_dir
from nextscale.training.run_lock import LOCK_NAME, RunDirBusyError, acquire


def _args(run_dir, strategy="ddp"):
    return Namespace(
        strategy=strategy, ema_decay=None, preview_every=None, device="cpu", dist_timeout=60.0, run_dir=str(run_dir)
    )


def test_parallelism_is_refused_before_the_run_dir_is_made_or_training_starts(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: --strategy none would train two separate models
    called = []
    with pytest.raises(ValueError, match="--strategy none is for one process"):
        train_in_run_dir(_args(tmp_path / "run", strategy="none"), lambda args, dist_info: called.append(dist_info))
    assert not called
    assert not (tmp_path / "run").exists()


def test_training_runs_in_one_process_holding_the_run_dir_lock(tmp_path):
    run_dir = tmp_path / "run"
    seen = []

    def train(args, dist_info):
        with pytest.raises(RunDirBusyError):  # a second command on this run dir is refused while training
            acquire(run_dir)
        seen.append((args.run_dir, dist_info.world_size, dist_info.is_main))

    train_in_run_dir(_args(run_dir), train)
    assert seen == [(str(run_dir), 1, True)]
    assert (run_dir / LOCK_NAME).read_text() == ""  # released: it records no PID
    acquire(run_dir).close()  # and the next command may take it
