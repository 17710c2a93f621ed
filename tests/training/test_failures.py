"""A run that fails stops with one sentence naming what failed and the checkpoint it resumes from, and writes
nothing a resume could pick up: a NaN loss, a full disk at a checkpoint, an unwritable run directory."""

import errno
import os

import pytest
import torch
from test_cli import REPO
from training_helpers import tiny_configs, train_config

from nextscale import pretrained
from nextscale.cli import main as cli_main
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TokenizerLossConfig, seed_everything
from nextscale.training.failures import CheckpointWriteError, NonFiniteLoss, PeerLost
from nextscale.training.tokenizer_trainer import TokenizerTrainer

TINY = "--config configs/tiny_tokenizer.json --disc-start none --eval-every none --preview-every none --no-progress"


def _trainer(run_dir, data, **overrides):
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tiny_configs()[0])
    config = train_config(**{"total_steps": 6, "checkpoint_every": 2, **overrides})
    return TokenizerTrainer(tokenizer, TokenizerLossConfig(), config, run_dir, *data)


def _nan_from_step(trainer, step: int) -> None:
    """Make the loss NaN from optimizer step ``step`` on (steps count from 1), as a diverging run would."""
    train_step = trainer.train_step

    def poisoned(batch):
        out = train_step(batch)
        if trainer.step + 1 >= step:
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.train_step = poisoned


def test_nan_loss_stops_before_the_step_is_applied_and_saves_nothing(tmp_path, data):
    trainer = _trainer(tmp_path / "run", data)
    _nan_from_step(trainer, 5)
    with pytest.raises(NonFiniteLoss) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "loss is nan at step 5" in message
    assert str(ckpt.checkpoint_path(tmp_path / "run", 4)) in message and "(step 4)" in message
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["step-00000002.pt", "step-00000004.pt"]
    assert trainer.step == 4  # step 5 was never applied: the weights in memory are still finite
    assert all(torch.isfinite(p).all() for p in trainer.raw_model.parameters())
    resumed = _trainer(tmp_path / "run", data)  # the same command resumes from step 4 and finishes
    assert resumed.step == 4
    resumed.fit()
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000006.pt"


def test_nan_before_any_checkpoint_says_the_run_starts_over(tmp_path, data):
    trainer = _trainer(tmp_path / "run", data)
    _nan_from_step(trainer, 1)
    with pytest.raises(NonFiniteLoss, match="at step 1.*no checkpoint was written yet"):
        trainer.fit()
    assert ckpt.list_checkpoints(tmp_path / "run") == []


def test_full_disk_at_a_checkpoint_keeps_the_previous_one(tmp_path, data, monkeypatch):
    run_dir = tmp_path / "run"
    trainer = _trainer(run_dir, data)
    replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("step-00000004.pt"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        replace(src, dst)

    monkeypatch.setattr(pretrained.os, "replace", full_disk)
    with pytest.raises(CheckpointWriteError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert message.startswith("training stopped: could not write checkpoint") and "ENOSPC" in message
    assert f"{ckpt.checkpoint_path(run_dir, 2)} (step 2), intact" in message
    folder = run_dir / ckpt.CHECKPOINT_DIR
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002.pt", "step-00000002.pt.json"]  # no temp
    state, path = ckpt.load_latest(run_dir)  # verified against its SHA-256 record
    assert path.name == "step-00000002.pt" and state["step"] == 2


def test_cli_prints_one_line_for_nan_full_disk_and_unwritable_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    train_step = TokenizerTrainer.train_step

    def nan_at_step_3(self, batch):
        out = train_step(self, batch)
        if self.step == 2:
            out["loss"] = out["loss"] + float("inf")
        return out

    with monkeypatch.context() as patch:
        patch.setattr(TokenizerTrainer, "train_step", nan_at_step_3)
        assert cli_main(["train-tokenizer", *f"{TINY} --run-dir {tmp_path / 'nan'} --steps 4".split()]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "loss is inf at step 3" in error and "no checkpoint was written yet" in error

    def full_disk(src, dst):
        if "step-" in str(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    replace = os.replace

    with monkeypatch.context() as patch:
        patch.setattr(pretrained.os, "replace", full_disk)
        assert cli_main(["train-tokenizer", *f"{TINY} --run-dir {tmp_path / 'full'} --steps 2".split()]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "could not write checkpoint" in error and "No space left" in error

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli_main(["train-tokenizer", *f"{TINY} --run-dir {blocker / 'run'} --steps 2".split()]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"cannot write to run directory {blocker / 'run'}" in error

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    with monkeypatch.context() as patch:  # tests may run as root, where chmod does not deny anything
        patch.setattr("nextscale.training.run_lock.tempfile.mkstemp", denied)
        assert cli_main(["train-tokenizer", *f"{TINY} --run-dir {tmp_path / 'denied'} --steps 2".split()]) == 2
    error = capsys.readouterr().err.strip()
    assert "cannot write to run directory" in error and "(Permission denied); nothing was trained" in error
    assert not (tmp_path / "denied" / "config.json").exists()


def test_peer_lost_names_the_timeout_flag(tmp_path):
    """Ranks waiting while rank 0 writes a large checkpoint alone time out just like ranks whose peer hangs; the same
    command would stop at the same checkpoint again, so the message must say which flag gives them longer."""
    timeout = RuntimeError("[../gloo/transport/tcp/pair.cc:534] Timed out waiting 600000ms for recv operation")
    message = str(PeerLost(timeout, 7, tmp_path / "run", 6))
    assert message.count("\n") == 0
    assert "step 7" in message and "Timed out waiting 600000ms" in message
    assert str(ckpt.checkpoint_path(tmp_path / "run", 6)) in message and "re-running the same command" in message
    assert "longer than --dist-timeout" in message and "add a larger --dist-timeout (seconds, default 600)" in message
