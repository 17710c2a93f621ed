"""What each rank of a torchrun job prints: the lines of flag parsing and fine-tuning once (on rank 0); when rank 0
cannot write a checkpoint, the others end with one line pointing to rank 0's message instead of repeating it; and
on SIGTERM (torchrun passes it on to every rank) rank 0 alone says at which step it saved."""

import argparse
import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_cli import REPO
from test_fine_tune import fine_tune_args

from nextscale.cli.train_model import adapted_for_fine_tuning
from nextscale.presets import tiny
from nextscale.training.failures import CheckpointWriteError, RankZeroWriteFailed
from nextscale.training.options import apply_run_file, fit_and_report
from nextscale.transformer.model import ScaleTransformer

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def test_run_file_notes_are_logged_by_rank_zero_only(tmp_path, monkeypatch, caplog):
    # Under torchrun the flags are parsed before the process group exists: the launcher's RANK decides.
    run_file = tmp_path / "run.json"
    run_file.write_text('{"args": {"data": "fashion-mnist:elsewhere", "in-channels": 3, "steps": 3}}')
    for rank, expected in (("0", 1), ("1", 0)):
        monkeypatch.setenv("RANK", rank)
        caplog.clear()
        args = SimpleNamespace(config=str(run_file), _given_on_command_line=frozenset({"data"}))
        args._parser = _parser()
        with caplog.at_level(logging.INFO, logger="nextscale.training.options"):
            apply_run_file(args, sources=((("data",), ("in_channels",)),))
        assert args.steps == 3
        assert sum("ignoring in-channels" in record.getMessage() for record in caplog.records) == expected


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data")
    parser.add_argument("--in-channels", type=int)
    parser.add_argument("--steps", type=int)
    return parser


def test_fine_tuning_changes_are_printed_by_rank_zero_only(monkeypatch, capsys):
    model = ScaleTransformer(tiny()[1])  # 10 classes
    monkeypatch.setenv("RANK", "1")
    assert adapted_for_fine_tuning(model, fine_tune_args(num_classes=3)).config.num_classes == 3
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    adapted_for_fine_tuning(model, fine_tune_args(num_classes=3))
    assert "10 -> 3 classes" in capsys.readouterr().out


def _failing_write(rank: int, tmp_path: Path):
    full = OSError(errno.ENOSPC, "No space left on device")
    here = full if rank == 0 else OSError(None, "rank 0 could not write it")  # what write_checkpoint raises
    path = tmp_path / "checkpoints" / "step-00000004.pt"

    def fit(max_steps):
        raise CheckpointWriteError(path, here, tmp_path, 2)

    return SimpleNamespace(fit=fit, dist=SimpleNamespace(is_main=rank == 0, rank=rank))


def test_a_failed_checkpoint_write_is_explained_by_rank_zero_and_pointed_to_by_the_others(tmp_path):
    with pytest.raises(CheckpointWriteError, match="No space left on device.*step-00000002.pt"):
        fit_and_report(_failing_write(0, tmp_path), None, (), "tokenizer")
    with pytest.raises(RankZeroWriteFailed) as caught:
        fit_and_report(_failing_write(1, tmp_path), None, (), "tokenizer")
    message = str(caught.value)
    assert message.startswith("training stopped on rank 1 because rank 0 could not write checkpoint ")
    assert "step-00000004.pt" in message and "rank 0's message says why" in message and "\n" not in message


FULL_DISK_ON_RANK_ZERO = """\
import errno, os, sys
from nextscale.cli import main
from nextscale.training import checkpoint

real_save, saves = checkpoint.save_checkpoint, []


def save(path, state):  # rank 0's second checkpoint meets a full disk
    saves.append(path)
    if os.environ["RANK"] == "0" and len(saves) == 2:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_save(path, state)


checkpoint.save_checkpoint = save
sys.exit(main(sys.argv[1:]))
"""


def _rank_output(log_dir: Path, rank: int) -> list[str]:
    """A worker's stdout and stderr lines, from torchrun's --log-dir (one folder per local rank)."""
    files = sorted(path for path in log_dir.rglob("*.log") if path.parent.name == str(rank))
    assert files, f"no log of rank {rank} under {log_dir}"
    return [line for path in files for line in path.read_text().splitlines() if line.strip()]


def _torchrun_tokenizer(entry: list[str], log_dir: Path, run_dir: Path, flags: str) -> list[str]:
    """A 2-process torchrun command of the tiny tokenizer, each rank's output in its own file under ``log_dir``."""
    return [
        TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        f"--log-dir={log_dir}",
        "--redirects=3",
        *entry,
        "train-tokenizer",
        *"--config configs/tiny_tokenizer.json --data fashion-mnist:tests/assets/fashion_mnist".split(),
        *"--disc-start none --eval-every none --preview-every none --no-progress --device cpu".split(),
        *f"--log-every 1 --dist-timeout 60 --run-dir {run_dir} {flags}".split(),
    ]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


@pytest.mark.slow  # about 15 s: a 2-process torchrun job of the tiny tokenizer
@pytest.mark.skipif(TORCHRUN is None, reason="needs torchrun")
def test_torchrun_ranks_print_once_and_a_full_disk_ends_every_rank_with_one_line(tmp_path):
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_ON_RANK_ZERO)
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    command = _torchrun_tokenizer([str(script)], log_dir, run_dir, "--steps 4 --checkpoint-every 2")
    job = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert job.returncode != 0
    main, other = _rank_output(log_dir, 0), _rank_output(log_dir, 1)
    # rank 0: the typed --data replaces the run file's (logged once, by options' rank-0 logger), then the cause
    assert sum("ignoring in-channels from configs/tiny_tokenizer.json" in line for line in main) == 1, main
    assert main[-1].startswith("nextscale train-tokenizer: error: training stopped: could not write checkpoint ")
    assert "No space left on device (ENOSPC)" in main[-1] and "step-00000002.pt (step 2), intact" in main[-1]
    # rank 1: nothing but one line naming rank 0's failure (no log lines, no traceback, no timeout)
    assert other == [
        "nextscale train-tokenizer: error: training stopped on rank 1 because rank 0 could not write checkpoint "
        f"{run_dir / 'checkpoints' / 'step-00000004.pt'}; rank 0's message says why and which checkpoint the same "
        "command resumes from"
    ], other
    assert (run_dir / "checkpoints" / "step-00000002.pt").is_file()
    assert not (run_dir / "checkpoints" / "step-00000004.pt").exists()


def _logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return max((json.loads(line)["step"] for line in lines if line.strip().endswith("}")), default=0)


@pytest.mark.slow  # about 15 s: a 2-process torchrun job of the tiny tokenizer
@pytest.mark.skipif(TORCHRUN is None, reason="needs torchrun")
def test_sigterm_to_torchrun_checkpoints_and_rank_zero_alone_says_where(tmp_path):
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    command = _torchrun_tokenizer(["-m", "nextscale"], log_dir, run_dir, "--steps 1000 --checkpoint-every none")
    job = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while _logged_step(run_dir) < 2:
            assert job.poll() is None and time.monotonic() < deadline, "the job did not reach step 2"
            time.sleep(0.05)
        job.send_signal(signal.SIGTERM)  # what a scheduler sends; torchrun passes it on to each rank's process group
        assert job.wait(timeout=60) != 0
    finally:
        job.kill()
    main, other = _rank_output(log_dir, 0), _rank_output(log_dir, 1)
    assert sum("SIGTERM: stopping after this step" in line for line in main) == 1, main
    found = re.fullmatch(
        r"nextscale train-tokenizer: interrupted at step (\d+) \(saved (\S+)\); re-run the same command to resume "
        r"from step \1",
        main[-1],
    )
    assert found, main[-1]
    step = int(found.group(1))
    assert step >= 2 and Path(found.group(2)) == run_dir / "checkpoints" / f"step-{step:08d}.pt"
    assert Path(found.group(2)).is_file()
    assert other == [], other  # the other rank stops at the same step, silently (exit status 130)
