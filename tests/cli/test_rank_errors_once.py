"""Under torchrun every rank parses the same flags and reads the same data, so most errors reach every rank: the
one-line error is printed once, by rank 0. An error that only a rank > 0 meets is still printed, with its rank.

The fast tests run the CLI in this process with RANK set as torchrun sets it, and a TCPStore of their own standing in
for torchrun's agent store; the slow ones run real 2-process torchrun jobs on CPU (gloo).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

import nextscale.cli
import nextscale.cli.train_tokenizer
from nextscale.cli import main, print_error

REPO = Path(__file__).resolve().parents[2]
BAD_STEPS = "nextscale train-tokenizer: error: argument --steps: expected a whole number >= 1, got 'abc'"


@pytest.fixture
def agent_store(monkeypatch):
    """A key-value store where torchrun's agent keeps its own, with the environment torchrun gives its workers."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    for name, value in dict(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(store.port),
        TORCHELASTIC_USE_AGENT_STORE="True",
        TORCHELASTIC_RESTART_COUNT="0",
        WORLD_SIZE="2",
    ).items():
        monkeypatch.setenv(name, value)
    return store


def _as_rank(monkeypatch, rank: str, argv: list[str], capsys) -> tuple[int, str]:
    monkeypatch.setenv("RANK", rank)
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's errors end the process
        status = stop.code
    return status, capsys.readouterr().err


def test_rank_one_is_quiet_for_the_line_rank_zero_printed(agent_store, monkeypatch, capsys):
    argv = ["train-tokenizer", "--steps", "abc"]
    status, err = _as_rank(monkeypatch, "0", argv, capsys)
    assert status == 2 and err.startswith(BAD_STEPS) and err.count("\n") == 1, err
    status, err = _as_rank(monkeypatch, "1", argv, capsys)
    assert (status, err) == (2, "")  # the same exit status, nothing printed


def test_rank_one_prints_another_error_with_its_rank(agent_store, monkeypatch, capsys):
    _as_rank(monkeypatch, "0", ["train-tokenizer", "--steps", "abc"], capsys)
    status, err = _as_rank(monkeypatch, "1", ["train-tokenizer", "--steps", "0"], capsys)
    assert status == 2
    assert err.startswith("rank 1: nextscale train-tokenizer: error: argument --steps: must be >= 1, got 0"), err
    assert err.count("\n") == 1


def test_rank_one_prints_its_error_when_rank_zero_announces_none(agent_store, monkeypatch, capsys):
    # a restarted job (another attempt) does not see the line of the attempt before
    _as_rank(monkeypatch, "0", ["train-tokenizer", "--steps", "abc"], capsys)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    monkeypatch.setattr(nextscale.cli, "RANK_ZERO_WAIT_S", 0.3)
    status, err = _as_rank(monkeypatch, "1", ["train-tokenizer", "--steps", "abc"], capsys)
    assert status == 2 and err.startswith(f"rank 1: {BAD_STEPS}"), err


def test_without_torchrun_s_store_every_rank_prints_its_line(monkeypatch, capsys):
    # another launcher: no store outlives the process group, so nothing can tell rank 1 that rank 0 printed it
    for name in ("TORCHELASTIC_USE_AGENT_STORE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    status, err = _as_rank(monkeypatch, "1", ["train-tokenizer", "--steps", "abc"], capsys)
    assert status == 2 and err.startswith(f"rank 1: {BAD_STEPS}"), err
    status, err = _as_rank(monkeypatch, "0", ["train-tokenizer", "--bogus"], capsys)
    assert status == 2 and err.startswith("nextscale train-tokenizer: error: unrecognized arguments: --bogus"), err


def test_an_error_that_names_its_rank_is_printed_as_it_is(agent_store, monkeypatch, capsys):
    from nextscale.training.failures import RankZeroWriteFailed

    def run(args):
        raise RankZeroWriteFailed(Path("x.pt"), rank=1)

    monkeypatch.setattr(nextscale.cli.train_tokenizer, "run", run)
    status, err = _as_rank(monkeypatch, "1", ["train-tokenizer"], capsys)
    expected = "nextscale train-tokenizer: error: training stopped on rank 1 because rank 0 could not write checkpoint"
    assert status == 2 and err.startswith(expected) and err.count("\n") == 1, err


def test_a_line_is_not_taken_for_its_rank_s_own_by_its_text(agent_store, monkeypatch, capsys):
    # the error's class says whether its line names its rank; a message that merely mentions "rank 1" gets the prefix
    line = "nextscale train: error: the shard list of rank 1 is empty; use more shards than ranks"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(nextscale.cli, "RANK_ZERO_WAIT_S", 0.0)
    print_error(line, ValueError(line))
    assert capsys.readouterr().err == f"rank 1: {line}\n"


def test_an_unreadable_rank_still_prints_the_error(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "one")
    print_error("nextscale train: error: environment variable RANK='one' is not an integer")
    assert capsys.readouterr().err == "nextscale train: error: environment variable RANK='one' is not an integer\n"


ONLY_RANK_ONE_FAILS = """\
import os, sys
import nextscale.cli
import nextscale.cli.train_tokenizer
from nextscale.cli import main, train_tokenizer

nextscale.cli.RANK_ZERO_WAIT_S = 2.0  # rank 0 is waiting for rank 1 to join its process group: no line comes


def run(args):
    raise ValueError("only this process meets this")


if os.environ["RANK"] == "1":
    train_tokenizer.run = run
sys.exit(main(sys.argv[1:]))
"""


def _torchrun(entry: list[str], flags: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """A 2-process torchrun job of the tiny tokenizer on CPU, its workers' and torchrun's output in one stream."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *entry]
    command += ["train-tokenizer", *"--config configs/tiny_tokenizer.json --device cpu --dist-timeout 60".split()]
    command += ["--run-dir", str(tmp_path / "run"), *flags.split()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120
    )


@pytest.mark.slow  # about 8 s each: a 2-process torchrun job that stops at its flags or data
@pytest.mark.parametrize(
    "flags, expected",
    [
        ("--steps abc", BAD_STEPS),  # argparse's error
        ("--steps 2 --data folder/that/is/missing", "nextscale train-tokenizer: error: data folder folder/that/is"),
    ],
    ids=["bad-flag-value", "missing-data-folder"],
)
def test_torchrun_prints_an_error_every_rank_meets_once(tmp_path, flags, expected):
    job = _torchrun(["-m", "nextscale"], flags, tmp_path)
    assert job.returncode != 0
    lines = job.stdout.splitlines()
    assert sum(expected in line for line in lines) == 1, job.stdout
    assert [line for line in lines if line.startswith(expected)], job.stdout  # its own line, rank 0's
    assert not any(line.startswith("rank 1:") for line in lines), job.stdout


@pytest.mark.slow  # about 10 s: a 2-process torchrun job whose rank 1 alone fails, before the process group
def test_torchrun_shows_an_error_only_rank_one_meets_with_its_rank(tmp_path):
    script = tmp_path / "only_rank_one_fails.py"
    script.write_text(ONLY_RANK_ONE_FAILS)
    job = _torchrun([str(script)], "--steps 2 --data fashion-mnist:tests/assets/fashion_mnist", tmp_path)
    assert job.returncode != 0
    lines = job.stdout.splitlines()
    assert "rank 1: nextscale train-tokenizer: error: only this process meets this" in lines, job.stdout
    assert sum("only this process meets this" in line for line in lines) == 1, job.stdout
