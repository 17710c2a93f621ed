"""A torchrun job whose rank 1 is SIGKILLed mid-training: rank 0 stops within a bounded time with one line
naming the cause and the checkpoint, torchrun exits non-zero, and the same torchrun command resumes and finishes.

What stops the survivor: gloo sees the dead peer's connection drop, so rank 0's next collective fails at once
(a peer that hangs instead fails the collectives after --dist-timeout); the trainer turns that into ``PeerLost``
and the CLI prints one line. torchrun's elastic agent also notices the dead worker and sends SIGTERM to the rest,
so the survivor is stopped even if it were blocked elsewhere.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import REPO

STEPS = 40
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


def _command(run_dir: Path) -> list[str]:
    return [
        TORCHRUN,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "nextscale",
        "train-tokenizer",
        *"--config configs/tiny_tokenizer.json --disc-start none --eval-every none --preview-every none".split(),
        *f"--no-progress --device cpu --steps {STEPS} --checkpoint-every 2 --log-every 1 --dist-timeout 60".split(),
        "--run-dir",
        str(run_dir),
    ]


def _logged_step(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return max(steps, default=0)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (its environment says so)."""
    for task in os.listdir(f"/proc/{launcher}/task"):
        for child in Path(f"/proc/{launcher}/task/{task}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
    return None


@pytest.mark.slow  # about 20 s: two 2-process torchrun jobs of the tiny tokenizer
@pytest.mark.skipif(TORCHRUN is None or not Path("/proc/self/task").is_dir(), reason="needs torchrun and Linux /proc")
def test_killed_rank_stops_the_job_and_the_same_command_resumes(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    job = subprocess.Popen(
        _command(run_dir), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while _logged_step(run_dir) < 5:
            assert job.poll() is None, f"the job ended before step 5: {job.stdout.read()[-3000:]}"
            assert time.monotonic() < deadline, "step 5 was not logged within 120 s"
            time.sleep(0.05)
        victim = _rank_pid(job.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        output, _ = job.communicate(timeout=90)  # bounded: never the 30-minute default collective timeout
        stopped_after = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0 and stopped_after < 90
    assert "Signal 9 (SIGKILL)" in output  # torchrun names the dead rank as the root cause
    survivor = [line for line in output.splitlines() if "nextscale train-tokenizer: error:" in line]
    assert len(survivor) == 1 and "another process of this distributed run died" in survivor[0], output[-3000:]
    assert "re-running the same command resumes from it" in survivor[0]
    assert "add a larger --dist-timeout" in survivor[0]  # in case no process died, but one worked alone too long
    reached = _logged_step(run_dir)
    assert 5 <= reached < STEPS

    rerun = subprocess.run(_command(run_dir), cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "resumed from" in rerun.stdout + rerun.stderr
    assert (run_dir / "checkpoints" / f"step-{STEPS:08d}.pt").is_file()
    assert _logged_step(run_dir) == STEPS
