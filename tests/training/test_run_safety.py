"""A run folder stays safe: Ctrl-C checkpoints, one process per folder, failed starts and finished runs."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import REPO, run_command
from training_helpers import read_metrics, train_config

from nextscale.cli import main as cli_main
from nextscale.training.checkpoint import latest_checkpoint
from nextscale.training.run_lock import LOCK_NAME, RunDirBusyError, acquire

TINY = "--config configs/tiny_tokenizer.json --disc-start none --eval-every none --preview-every none --no-progress"


def _wait_for_step(run_dir: Path, process: subprocess.Popen, step: int, timeout: float = 120.0) -> None:
    """Poll the metrics file until ``step`` is logged (the child's own progress is the only clock here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()[1]}")
        path = run_dir / "metrics.jsonl"
        if path.is_file() and any(r["step"] >= step for r in read_metrics(run_dir)):
            return
        time.sleep(0.05)
    raise AssertionError(f"step {step} was not logged within {timeout} s")


def test_ctrl_c_checkpoints_and_the_same_command_resumes_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    # No periodic checkpoints: a resumed step > 0 can only come from the interruption's checkpoint.
    command = f"{TINY} --run-dir {run_dir} --steps 400 --log-every 1 --checkpoint-every none"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    child = subprocess.Popen(
        [sys.executable, "-m", "nextscale", "train-tokenizer", *command.split()],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_step(run_dir, child, 2)
        # A second command on the same folder refuses with one line naming the folder and the holder.
        assert cli_main(["train-tokenizer", *command.split()]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and f"{run_dir} is in use by process {child.pid}" in error
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    found = re.search(r"interrupted at step (\d+) \(saved (\S+)\); re-run the same command to resume from step", stderr)
    assert found, stderr
    step = int(found.group(1))
    assert 2 <= step < 400 and latest_checkpoint(run_dir) == Path(found.group(2))
    # The same command (stopped one step later to keep the test short) resumes at the interrupted step.
    assert run_command("train_tokenizer", f"{command} --max-steps {step + 1}") == 0
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, step + 2))
    assert (run_dir / LOCK_NAME).read_text() == ""  # released


def test_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path, caplog):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / LOCK_NAME).write_text(f"{gone.pid}\n")
    handle = acquire(tmp_path)
    assert f"locked by process {gone.pid}, which is gone; taking it over" in caplog.text
    with pytest.raises(RunDirBusyError, match=f"{tmp_path} is in use by process {os.getpid()}"):
        acquire(tmp_path)
    handle.close()
    acquire(tmp_path).close()  # closing released it


def test_a_lock_held_by_the_workers_of_a_killed_run_says_so_not_that_the_dead_process_runs(tmp_path):
    # DataLoader workers are forked and share the lock; killed, their parent is gone while they still exit
    code = (
        "import os, sys, time\nfrom nextscale.training.run_lock import acquire\n"
        f"handle = acquire({str(tmp_path)!r})\n"
        "if os.fork() == 0:\n    sys.stdin.read()\n    os._exit(0)\n"  # the worker: until the test closes stdin
        "print('locked', flush=True)\ntime.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline() == "locked\n"
        parent.kill()
        parent.wait()
        with pytest.raises(RunDirBusyError, match=f"process {parent.pid}, which locked it, is not running.*retry"):
            acquire(tmp_path)
    finally:
        parent.kill()
        parent.stdin.close()  # the worker exits, and the lock with it
    deadline = time.monotonic() + 60
    while True:
        try:
            acquire(tmp_path).close()
            break
        except RunDirBusyError:
            assert time.monotonic() < deadline, "the worker kept the lock"
            time.sleep(0.05)


def test_failed_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    common = f"{TINY} --run-dir {run_dir} --steps 2 --log-every 1"
    with pytest.raises(ValueError, match="200 samples, fewer than one batch of 500.*lower --batch-size to at most 200"):
        run_command("train_tokenizer", f"{common} --batch-size 500")
    assert not run_dir.exists()  # the folder it had created is removed
    # A config.json left without any checkpoint (e.g. by an older version) binds nothing either.
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"train": {"batch_size": 500}}))
    assert run_command("train_tokenizer", common) == 0
    assert json.loads((run_dir / "config.json").read_text())["train"]["batch_size"] == 16


def test_finished_run_asked_for_more_steps_explains_how_to_continue(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    common = f"{TINY} --run-dir {run_dir} --log-every 1"
    assert run_command("train_tokenizer", f"{common} --steps 2") == 0
    advice = f"finished its 2-step schedule.*--init-from {run_dir} and give a new --run-dir"
    with pytest.raises(ValueError, match=advice):
        run_command("train_tokenizer", f"{common} --steps 4")
    # the advice works: a new run from the finished one's weights
    assert run_command("train_tokenizer", f"{TINY} --init-from {run_dir} --run-dir {tmp_path / 'more'} --steps 1") == 0
    # an unfinished run with another total: resume with the original one
    unfinished = f"{TINY} --run-dir {tmp_path / 'half'} --log-every 1"
    assert run_command("train_tokenizer", f"{unfinished} --steps 4 --max-steps 1") == 0
    with pytest.raises(ValueError, match="resume it with --steps 4"):
        run_command("train_tokenizer", f"{unfinished} --steps 6")


def test_the_tokenizer_refuses_fsdp_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    command = f"--config configs/tiny_tokenizer.json --run-dir {tmp_path / 'tok'} --steps 2 --strategy fsdp"
    with pytest.raises(ValueError, match="the tokenizer trains with --strategy ddp"):
        run_command("train_tokenizer", command)
    assert not (tmp_path / "tok" / "checkpoints").exists()


def test_max_steps_below_the_runs_step_is_not_called_finished(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    command = f"{TINY} --run-dir {tmp_path} --steps 3"
    assert run_command("train_tokenizer", f"{command} --max-steps 2") == 0
    capsys.readouterr()
    assert run_command("train_tokenizer", f"{command} --max-steps 1") == 0
    out = capsys.readouterr().out
    assert "at step 2/3: nothing to train, --max-steps 1 is not past the run's step" in out
    assert "finished" not in out


def test_a_resume_on_other_held_out_data_trains_on_and_says_where_the_curve_changes(tmp_path, caplog):
    """Held-out data may change at a resume (a val/ folder added later): training is the same run, but the
    held-out curve then joins two measurements, so the step where they meet is named."""
    import logging

    from nextscale.training.run_dir import check_run_dir

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000040.pt").touch()
    config = {"data": "d", "held_out": "--eval-tokens /a", "train": {"total_steps": 100}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        check_run_dir(tmp_path, config, 100)  # the same held-out data: nothing to say
        assert not caplog.records
        check_run_dir(tmp_path, {**config, "held_out": "--eval-tokens /b"}, 100)  # not refused
    assert "held-out metrics after step 40 measure other data than those before it" in caplog.text
    caplog.clear()
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "held_out"}))
    check_run_dir(tmp_path, {**config, "held_out": "--eval-tokens /b"}, 100)  # a run from before: silent
    assert not caplog.records


def test_a_ctrl_c_reaching_a_forked_data_worker_is_announced_by_the_training_process_alone(monkeypatch, caplog):
    """A terminal's Ctrl-C goes to the whole process group: DataLoader workers inherit the handler and each said
    "stopping after this step" too (the same line three times with --num-workers 2)."""
    from nextscale.training import interrupt

    with interrupt.StopRequest() as stop:
        monkeypatch.setattr(interrupt.os, "getpid", lambda: os.getppid())  # as in a forked worker: another pid
        stop._handle(signal.SIGINT, None)
        assert stop.requested and "stopping after this step" not in caplog.text
        monkeypatch.undo()
        stop.requested = False
        stop._handle(signal.SIGINT, None)  # the training process itself
    assert stop.requested and caplog.text.count("SIGINT: stopping after this step") == 1


def test_a_resume_with_changed_settings_says_which_changed(tmp_path, caplog):
    """Cadences, precision, strategy... may change at a resume; config.json is then rewritten with the new values,
    so the log line is the only trace that the run's first steps were made otherwise (it said nothing)."""
    import logging

    from nextscale.training.run_dir import check_run_dir

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step-00000040.pt").touch()
    config = {"data": "d", "train": {"total_steps": 100, "precision": "fp32", "log_every": 10, "progress": True}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.INFO):
        check_run_dir(tmp_path, config, 100)
        assert "changed settings" not in caplog.text
        changed = {**config, "train": {**config["train"], "precision": "bf16", "log_every": 5}}
        check_run_dir(tmp_path, changed, 100)
    assert "changed settings: train.log_every: 10 -> 5; train.precision: 'fp32' -> 'bf16'" in caplog.text


@pytest.mark.parametrize("code", ["ENOSYS", "ENOLCK"])
def test_a_file_system_without_locks_trains_unguarded_with_a_warning(tmp_path, monkeypatch, caplog, code):
    """Lustre mounted without -o flock answers flock with ENOSYS, NFS without a lock daemon with ENOLCK: training
    stopped there with a bare "[Errno 38] Function not implemented", naming neither the lock nor the folder."""
    import errno
    import fcntl

    from nextscale.training import run_lock

    def no_locks(*args):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    handle = acquire(tmp_path)
    assert f"run directory {tmp_path} cannot be locked on its file system" in caplog.text
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    handle.close()
    monkeypatch.setattr(fcntl, "flock", lambda *args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(run_lock.RunDirUnwritableError, match=f"cannot lock run directory {tmp_path} \\(I/O error\\)"):
        acquire(tmp_path)


def test_data_workers_leave_ctrl_c_to_the_training_process(data):
    """Ctrl-C reaches the workers too. A worker that did not inherit the trainer's handler (spawn or forkserver: macOS,
    Python 3.14 on Linux; here a worker with Python's default handler) died of it, and the step being finished before
    the checkpoint failed on "worker exited unexpectedly" (or an ENOENT from its shared memory): no checkpoint."""
    import multiprocessing

    import torch

    from nextscale.data.samplers import ResumableDistributedSampler
    from nextscale.training.batches import train_batches

    train_set, _ = data
    sampler = ResumableDistributedSampler(len(train_set), 2, seed=0)
    batches = train_batches(train_set, sampler, 0, train_config(num_workers=1, batch_size=2), torch.device("cpu"))
    next(batches)
    workers = multiprocessing.active_children()
    assert workers
    for worker in workers:
        os.kill(worker.pid, signal.SIGINT)
    for _ in range(8):  # more than the two batches the loader fetched ahead
        next(batches)
    assert all(worker.is_alive() for worker in workers)
    batches.close()
