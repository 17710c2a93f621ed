"""benchmarks/gpu_checks.sh, the one prepared run of a rented GPU, run here with a stand-in for python.

It must run every step even when one fails, say which step printed each line, keep a PYTHONPATH set before it
(carried wheels), and write one log per step to $OUT.
"""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("cuda_graphs", "pytest_gpu", "train_step", "sampling_paths", "attention_mask")

FAKE_PYTHON = """#!/bin/sh
case "$*" in *find_spec*) exit 1;; esac
echo "ran $1 with PYTHONPATH=$PYTHONPATH"
exit 3
"""


def test_every_step_runs_after_failures_and_its_lines_are_named(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "PYTHONPATH": "/carried/site"}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_checks.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in STEPS:
        assert f"== {name}: exit 3;" in result.stdout  # a failed step does not stop the ones after it
        assert (out / f"{name}.txt").is_file()
    assert "[cuda_graphs] ran benchmarks/cuda_graph_speed.py with PYTHONPATH=src:benchmarks:/carried/site" in (
        result.stdout
    )
    assert "[pytest_gpu] ran -m with PYTHONPATH=" in result.stdout
    assert "test_caption_cache.py is left out" in result.stdout  # its encoder package is missing (the fake says so)
    assert "== all steps done" in result.stdout
    for line in result.stdout.splitlines():
        assert line.startswith(("== ", "[")), line  # every line names its step (or is the script's own)


def test_every_benchmark_the_script_runs_exists():
    text = (ROOT / "benchmarks" / "gpu_checks.sh").read_text()
    scripts = {word for word in text.split() if word.startswith("benchmarks/") and word.endswith(".py")}
    assert len(scripts) == 4
    assert all((ROOT / script).is_file() for script in scripts)
    tests = {word.strip("()") for word in text.split() if word.strip("(").startswith("tests/")}
    assert tests and all((ROOT / test).is_file() for test in tests)
