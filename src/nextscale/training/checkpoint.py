"""Training checkpoints: one atomically written, checksummed file per save, the newest N kept, bad ones skipped.

A checkpoint is ``run_dir/checkpoints/step-00001234.pt``: a ``torch.save`` of a dict that holds only
tensors, numbers, strings, lists and dicts, read back with ``torch.load(weights_only=True)`` (so loading
never runs code from the file). It carries everything resuming needs: model (unwrapped) and EMA weights,
optimizer and GradScaler states, the step, the configs as dicts, the data-sampler position and every
rank's RNG states (torch, CUDA, NumPy, Python). Tensors are stored as they are, so a save/load round
trip is bit-exact.

Beside each file, ``step-00001234.pt.json`` records its size and SHA-256 (written atomically just before the
checkpoint is renamed into place). Loading checks both, so a truncated or bit-flipped file is caught even where the zip
reader would not notice, and refuses weights holding NaN or infinity. :func:`load_latest` then falls back
to the newest good checkpoint, with a warning that names the skipped file and the one used. A checkpoint
without a record (written by an older version) is loaded unverified.

References: VAR ``utils/misc.py`` (``auto_resume``), DiT ``train.py`` (checkpoint contents).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import pickle
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from nextscale.pretrained import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.pt\Z")
# Free space under which a failed torch.save is taken for a full disk (its error carries no errno); torch writes a
# tensor's storage in one call, which fills the disk to its last block before it fails.
FULL_DISK_BYTES = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint file could not be read (truncated, corrupt, or not a training checkpoint)."""


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:08d}.pt"


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step in a checkpoint's file name (``step-00001234.pt`` -> 1234)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like a checkpoint (step-XXXXXXXX.pt)")
    return int(match.group(1))


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


def record_path(path: str | os.PathLike) -> Path:
    """The size-and-checksum record beside a checkpoint: ``step-XXXXXXXX.pt.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of a file, read in 1 MiB chunks."""
    with open(path, "rb") as handle:
        return handle_digest(handle)


def handle_digest(handle: BinaryIO) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex digest) of an open file, read from its start in 1 MiB chunks."""
    handle.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` and its size-and-checksum record atomically (a crash leaves the previous files intact).

    The digest is taken from the temporary file, and the record written, before that file is renamed into
    place: every checkpoint that ever appears under its final name already has its record.
    """
    path = Path(path)
    record_path(path).unlink(missing_ok=True)  # a stale record of an earlier file of this name must not outlive it

    def write(tmp: str) -> None:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch's zip writer reports a failed write (a full disk) this way, without errno
            if disk_full(tmp):  # the partial file still holds what was written
                raise OSError(errno.ENOSPC, f"writing {path.name} failed: no space left on device") from err
            raise OSError(errno.EIO, f"writing {path.name} failed ({first_sentence(err)}); is the disk full?") from err
        size, sha256 = file_digest(tmp)
        record = {"file": path.name, "size": size, "sha256": sha256}
        atomic_write_text(record_path(path), json.dumps(record, indent=2) + "\n")

    try:
        atomic_write(path, write)  # removes its temporary file whatever fails
    except BaseException:
        record_path(path).unlink(missing_ok=True)  # a record without its checkpoint (disk full at the rename)
        raise
    return path


def disk_full(path: str | os.PathLike) -> bool:
    """Whether the disk holding ``path`` has less than ``FULL_DISK_BYTES`` free (False when that cannot be told)."""
    try:
        return shutil.disk_usage(path).free < FULL_DISK_BYTES
    except OSError:
        return False


def check_zip_members(path: Path, handle: BinaryIO | None = None) -> None:
    """Raise CheckpointError when a torch.save archive fails its members' CRC-32 checks (torch's reader skips
    them, so a flipped bit would load as wrong weights); a file that is not a zip archive is left to the loader.
    ``handle``: the file, already open (read from it instead of opening ``path``)."""
    try:
        with zipfile.ZipFile(path if handle is None else handle) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError):
        return
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: its member {bad} fails its CRC-32 check")


def verify_checkpoint(path: str | os.PathLike, handle: BinaryIO | None = None) -> bool:
    """Check a checkpoint's size and SHA-256 against its record.

    Args:
        path: the checkpoint file.
        handle: the file, already open: what is checked is what the caller goes on to read from it, even if a
            training run prunes ``path`` meanwhile.
    Returns:
        True when verified, False when the checkpoint has no record (it cannot be checked).
    Raises:
        CheckpointError: the file differs from its record (truncated, corrupt) or the record is unreadable.
    """
    path = Path(path)
    record_file = record_path(path)
    if not record_file.is_file():
        check_zip_members(path, handle)  # no record to compare with: at least the CRC-32 torch.save stores per member
        return False
    try:
        record = json.loads(record_file.read_text())
        size, sha256 = int(record["size"]), str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"the checksum record {record_file} of checkpoint {path} is unreadable ({err}); "
            "delete both files to resume from an older checkpoint"
        ) from err
    if handle is None and not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing (its record {record_file.name} exists)")
    actual_size = path.stat().st_size if handle is None else os.fstat(handle.fileno()).st_size
    if actual_size != size:
        raise CheckpointError(
            f"checkpoint {path} is truncated or overwritten: {actual_size} bytes, {size} recorded in {record_file.name}"
        )
    actual_size, actual_sha256 = file_digest(path) if handle is None else handle_digest(handle)
    if actual_sha256 != sha256:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: SHA-256 {actual_sha256[:16]}... differs from {sha256[:16]}... "
            f"recorded in {record_file.name}"
        )
    return True


def recorded_sha256(path: str | os.PathLike) -> str | None:
    """The SHA-256 recorded beside a checkpoint; None when it has no readable record."""
    try:
        return str(json.loads(record_path(path).read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def non_finite_weights(state: dict[str, Any]) -> list[str]:
    """Names of the model and EMA weight tensors in a checkpoint state that hold NaN or infinity."""
    tensors: dict[str, Any] = {f"models.{name}": weights for name, weights in (state.get("models") or {}).items()}
    if isinstance(state.get("ema"), dict):
        tensors["ema"] = state["ema"]
    found = []

    def walk(prefix: str, value: Any) -> None:
        if torch.is_tensor(value):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                found.append(prefix)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(prefix)

    for prefix, value in tensors.items():
        walk(prefix, value)
    return found


def first_sentence(err: BaseException) -> str:
    """The first line and sentence of an exception's message (torch's zip errors run to a paragraph)."""
    return (str(err).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read one checkpoint safely: checked against its record, ``weights_only=True``, finite weights only.

    Args:
        path: the checkpoint file.
        verify: compare its size and SHA-256 with its record; False skips that full read of the file, for a
            caller that knows the file was verified already (ranks > 0 loading the file rank 0 checked).
    Raises:
        CheckpointError: naming the file, when it is truncated, corrupt, not a training checkpoint, or its
            model or EMA weights hold NaN or infinity.
    """
    path = Path(path)
    # One open file for the check and the load: a training run that prunes this checkpoint meanwhile (its newer
    # saves with --keep-checkpoints) removes only the name, and what was verified is what is loaded.
    try:
        with open(path, "rb") as handle:
            verified = verify_checkpoint(path, handle) if verify else True
            handle.seek(0)
            state = torch.load(handle, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint {path} is missing") from err
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(err).__name__}: {first_sentence(err)}); "
            "the file is truncated or corrupt"
        ) from err
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a nextscale training checkpoint (no 'step' entry)")
    bad = non_finite_weights(state)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights (NaN or inf in {shown}); the run diverged before step "
            f"{state['step']} — resume from an older checkpoint (delete this one) with a lower learning rate"
        )
    if not verified:
        logger.info("checkpoint %s has no checksum record (%s); loaded unverified", path, record_path(path).name)
    return state


def load_latest(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The newest good checkpoint of a run; bad newer files are skipped with a warning naming both files.

    Returns:
        (state, path), or None when the run has no checkpoint.
    Raises:
        CheckpointError: every checkpoint file is bad.
    """
    found = list_checkpoints(run_dir)
    errors: list[tuple[Path, CheckpointError]] = []
    tried: set[Path] = set()
    while found:
        path = found.pop()
        if path in tried:
            continue
        tried.add(path)
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            if not path.exists():  # pruned by the run training meanwhile: it saved a newer one, look again
                found = list_checkpoints(run_dir)
                continue
            errors.append((path, err))
            continue
        for bad, err in errors:
            logger.warning("skipping checkpoint %s and using %s instead: %s", bad, path, err)
        return state, path
    if errors:
        # Every file is bad, so there is no older one to fall back to: the fix is to start over.
        damaged = ", ".join(
            file.name for path, _ in reversed(errors) for file in (path, record_path(path)) if file.exists()
        )
        raise CheckpointError(
            f"no readable checkpoint in {Path(run_dir) / CHECKPOINT_DIR}: "
            + "; ".join(str(err) for _, err in errors)
            + f". None can be resumed or exported: delete {damaged} there to train this run again from step 0, "
            "or train into another --run-dir"
        )
    return None


def prune_checkpoints(run_dir: str | os.PathLike, keep: int, saved_step: int | None = None) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (``keep`` < 1 keeps everything) and the temporary files
    of writes a crash interrupted; returns the deleted checkpoints. Call it only between saves (rank 0).

    ``saved_step``: the step just saved. Checkpoints of later steps are ones this run skipped as unreadable when
    it resumed (else it would have resumed from them): they are neither counted nor deleted, so a damaged file
    never pushes out the good checkpoints (the save of its step replaces it)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if folder.is_dir():
        for stale in folder.glob(".step-*.tmp"):  # atomic_write's temporaries, orphaned by a SIGKILL
            stale.unlink(missing_ok=True)
        for record in folder.glob("step-*.pt.json"):  # a crash between a record and its checkpoint's rename
            if not record.with_suffix("").exists():
                record.unlink(missing_ok=True)
    if keep < 1:
        return []
    found = list_checkpoints(run_dir)
    if saved_step is not None:
        found = [path for path in found if checkpoint_step(path) <= saved_step]
    old = found[:-keep]
    for path in old:
        path.unlink(missing_ok=True)  # the checkpoint first: every checkpoint keeps its record until it goes
        record_path(path).unlink(missing_ok=True)
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
