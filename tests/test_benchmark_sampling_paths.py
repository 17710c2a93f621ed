"""benchmarks/sampling_paths.py refuses bad ``--paths`` in one line, before it builds a model or starts its worker.

A bad name used to surface only after the reference worker had started: the traceback came, and then the run
hung on the idle worker until an outside time limit killed it (on a rented GPU, the rest of the lease).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sampling_paths():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import sampling_paths
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return sampling_paths


def run_benchmark(script: str, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--threads", "1", *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # before the fix a bad path came after the d16 build, and the run never ended
    )


def test_a_bad_path_ends_the_run_with_one_line_before_any_model_is_built():
    result = run_benchmark("sampling_paths.py", "--device", "cpu", "--paths", "reference", "bogus")
    assert result.returncode == 2
    assert "unknown path 'bogus'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing measured, nothing built


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["reference", "bogus"], "unknown path 'bogus'"),
        (["reference", "fp16+fused"], "fp16 is a GPU format"),
        (["reference", "int8"], None if torch.backends.quantized.supported_engines != ["none"] else "int8"),
        (["reference", "exact+fused", "fp32-onednn", "auto"], None),
        (["exact"], "must start with reference"),
        ([], "must start with reference"),
    ],
)
def test_path_names_are_checked_against_the_device(sampling_paths, paths, message):
    problem = sampling_paths.check_path_names(paths, torch.device("cpu"))
    if message is None:
        assert problem is None
    else:
        assert message in problem


def test_a_depth_outside_the_var_shapes_is_a_usage_error():
    result = run_benchmark("sampling_speed.py", "--depth", "1")
    assert result.returncode == 2
    assert "invalid choice: 1" in result.stderr
    assert "Traceback" not in result.stderr
