"""Training checkpoints: one atomically written file per save, the newest N kept, corrupt ones skipped.

A checkpoint is ``run_dir/checkpoints/step-00001234.pt``: a ``torch.save`` of a dict that holds only
tensors, numbers, strings, lists and dicts, read back with ``torch.load(weights_only=True)`` (so loading
never runs code from the file). It carries everything resuming needs: model (unwrapped) and EMA weights,
optimizer and GradScaler states, the step, the configs as dicts, the data-sampler position and every
rank's RNG states (torch, CUDA, NumPy, Python). Tensors are stored as they are, so a save/load round
trip is bit-exact.

References: VAR ``utils/misc.py`` (``auto_resume``), DiT ``train.py`` (checkpoint contents).
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nextscale.pretrained import atomic_write

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.pt\Z")


class CheckpointError(ValueError):
    """A checkpoint file could not be read (truncated, corrupt, or not a training checkpoint)."""


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint file of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (a crash leaves the previous file set intact)."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read one checkpoint safely (``weights_only=True``); raises CheckpointError naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt — delete it to resume from an older one"
        ) from err
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a nextscale training checkpoint (no 'step' entry)")
    return state


def load_latest(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint of a run; unreadable newer files are skipped with a warning.

    Returns:
        (state, path), or None when the run has no checkpoint.
    Raises:
        CheckpointError: every checkpoint file is unreadable.
    """
    found = list_checkpoints(run_dir)
    errors = []
    for path in reversed(found):
        try:
            return load_checkpoint(path), path
        except CheckpointError as err:
            errors.append(str(err))
            logger.warning("%s; falling back to the previous checkpoint", err)
    if errors:
        raise CheckpointError(
            "no readable checkpoint in " + str(Path(run_dir) / CHECKPOINT_DIR) + ": " + "; ".join(errors)
        )
    return None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (``keep`` < 1 keeps everything); returns the deleted."""
    if keep < 1:
        return []
    old = list_checkpoints(run_dir)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


# ------------------------------------------------------------------------------------------ RNG states
def capture_rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, NumPy and Python RNG states, as plain tensors and lists."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
