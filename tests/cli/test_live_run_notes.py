"""A run still training (its run_dir/.lock held by a live process): `evaluate` and `export` say in one line that they
use an intermediate checkpoint, and `info` says it is training now instead of advising a re-run that would be refused
as in use. A run that is not training (never locked, or locked by a process that is gone) gets none of this."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import atomic_write_text, config_to_dict, save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import run_lock
from nextscale.training.checkpoint import checkpoint_path, save_checkpoint
from nextscale.training.transformer_trainer import TOKENIZER_DIR
from nextscale.transformer.model import ScaleTransformer

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """(a tiny transformer run with checkpoints of steps 2 and 4 of 10, held-out tokens of 4 test images)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_manifest import write_manifest
    from nextscale.data.token_shards import write_token_shards

    root = tmp_path_factory.mktemp("live-run")
    run = root / "run"
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, in_channels=1)).eval()
    save_component(tokenizer, run / TOKENIZER_DIR)
    run_config = {
        "kind": "transformer",
        "transformer": config_to_dict(transformer_config),
        "train": {"total_steps": 10, "batch_size": 2},
    }
    atomic_write_text(run / "config.json", json.dumps(run_config))
    for step in (2, 4):
        weights = ScaleTransformer(transformer_config).state_dict()
        save_checkpoint(checkpoint_path(run, step), {"step": step, "models": {"model": weights}, "ema": None})
    images = torch.utils.data.Subset(FashionMNIST(ASSETS, "test", 16, 1), range(4))
    write_token_shards(tokenizer, images, root / "tokens", batch_size=4)
    write_manifest(tokenizer, len(images), root / "tokens", 50_000, split="test")
    return run, root / "tokens"


@pytest.fixture
def training(tiny_run):
    """The run's lock held as a training process holds it (by this process), released afterwards."""
    run, _ = tiny_run
    handle = run_lock.acquire(run)
    yield run
    handle.seek(0)
    handle.truncate()
    handle.close()


def evaluate_loss(run: Path, tokens: Path, out: Path) -> dict:
    argv = ["evaluate", "--loss", "--model", str(run), "--tokens", str(tokens), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_evaluate_of_a_run_still_training_says_which_checkpoint_it_uses(tiny_run, training, tmp_path, capsys):
    _, tokens = tiny_run
    report = evaluate_loss(training, tokens, tmp_path / "report.json")
    expected = f"run {training} is still training (process {os.getpid()}, step 4 so far): this uses checkpoint step 4"
    assert report["still_training"] == expected
    assert capsys.readouterr().err.count(expected) == 1


def test_export_of_a_run_still_training_says_so(training, tmp_path, capsys):
    assert main(["export", "--run", str(training), "--out", str(tmp_path / "pipe"), "--step", "2"]) == 0
    err = capsys.readouterr().err
    assert (
        f"run {training} is still training (process {os.getpid()}, step 4 so far): this uses checkpoint step 2" in err
    )


def test_info_of_a_run_still_training_does_not_advise_a_re_run(training, capsys):
    assert main(["info", str(training)]) == 0
    out = capsys.readouterr().out
    assert f"training now, process {os.getpid()}" in out
    assert "re-run its command" not in out


def test_a_run_that_is_not_training_gets_no_note(tiny_run, tmp_path, capsys):
    run, tokens = tiny_run
    (run / run_lock.LOCK_NAME).write_text("999999999\n")  # left by a process that was killed: no lock is held
    report = evaluate_loss(run, tokens, tmp_path / "report.json")
    assert "still_training" not in report
    assert "still training" not in capsys.readouterr().err
    assert main(["info", str(run)]) == 0
    assert "re-run its command to continue" in capsys.readouterr().out


def test_another_process_holding_the_lock_is_seen_with_its_pid(tmp_path):
    script = (
        "import sys, time\nfrom nextscale.training.run_lock import acquire\n"
        f"handle = acquire({str(tmp_path)!r})\nprint('locked', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_lock.training_process(tmp_path) == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert run_lock.training_process(tmp_path) is None  # the kernel dropped the lock of the killed process
    assert run_lock.training_process(tmp_path / "never-trained") is None
