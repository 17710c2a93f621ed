"""How a run stops when something goes wrong: one sentence naming what failed and the checkpoint to resume from.

These failures end a run without writing anything that a resume could pick up:

- ``NonFiniteLoss``: the loss (or, outside fp16, the gradient norm) became NaN or infinite. The check runs
  before any optimizer step, so the weights, EMA and optimizer states in memory are still those of the
  previous step, and nothing is saved: re-running resumes from the last checkpoint, which is finite.
- ``CheckpointWriteError``: writing a checkpoint failed (disk full, folder made read-only). The temporary
  file is removed and the previous checkpoint is untouched (see ``checkpoint.save_checkpoint``).
  The other ranks of a torchrun job raise ``RankZeroWriteFailed`` instead, a line that points to rank 0's.
- ``RunWriteError``: any other file operation of the run failed (metrics, previews, a data file): the
  checkpoints are untouched.
- ``PeerLost``: another process of a ``torchrun`` job died or stopped answering (a collective failed or
  timed out, see ``distributed.init_distributed``'s timeout). A rank that works alone for longer than
  ``--dist-timeout`` looks the same to the others (rank 0 writing and hashing a large checkpoint on a slow disk),
  and a plain re-run would fail at the same place: the message names the flag.

All are ``ValueError``/``OSError`` subclasses, so the CLI prints them as one line and exits with status 2.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from nextscale.distributed import DEFAULT_TIMEOUT_S
from nextscale.training import checkpoint as ckpt


def last_good_checkpoint(run_dir: str | os.PathLike, saved_step: int | None) -> str:
    """A phrase naming the checkpoint a re-run resumes from, e.g. ``the last good checkpoint is
    runs/x/checkpoints/step-00000200.pt (step 200), intact``."""
    if saved_step is None:
        return "no checkpoint was written yet, so re-running the same command starts from step 0"
    path = ckpt.checkpoint_path(run_dir, saved_step)
    return (
        f"the last good checkpoint is {path} (step {saved_step}), intact; re-running the same command resumes from it"
    )


class NonFiniteLoss(ValueError):
    """The loss or gradient norm of a step is NaN or infinite; nothing of that step was applied or saved."""

    def __init__(self, what: str, step: int, run_dir: str | os.PathLike, saved_step: int | None) -> None:
        super().__init__(
            f"training stopped: {what} at step {step}, and nothing of that step was applied or saved; "
            f"{last_good_checkpoint(run_dir, saved_step)}. Lower the learning rate (--lr / --base-lr), "
            "set --grad-clip, or use --precision fp32 before resuming"
        )
        self.step, self.saved_step = step, saved_step


def _os_reason(err: OSError) -> str:
    name = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
    text = err.strerror or str(err)
    return f"{text} ({name})" if name else text


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one is intact and its temporary file was removed."""

    def __init__(self, path: Path, err: OSError, run_dir: str | os.PathLike, saved_step: int | None) -> None:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = "free some disk space"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "make the run directory writable"
        else:
            hint = "fix the cause (a full disk, a failing drive or network file system)"
        super().__init__(
            err.errno,
            f"training stopped: could not write checkpoint {path}: {_os_reason(err)}; "
            f"{last_good_checkpoint(run_dir, saved_step)} once you {hint}",
        )
        self.path, self.saved_step = path, saved_step

    def __str__(self) -> str:
        return str(self.strerror)


class RankZeroWriteFailed(OSError):
    """What the other ranks of a torchrun job report when rank 0 could not write a checkpoint: one line pointing to
    rank 0's, which alone knows the cause and names the checkpoint to resume from (repeating it once per rank
    would bury it, and these ranks only learn that the write failed)."""

    # Its message names its rank already: the CLI prints it without another "rank N:" prefix (see cli.print_error).
    names_its_rank = True

    def __init__(self, path: Path, rank: int) -> None:
        super().__init__(
            None,
            f"training stopped on rank {rank} because rank 0 could not write checkpoint {path}; "
            "rank 0's message says why and which checkpoint the same command resumes from",
        )
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class RunWriteError(OSError):
    """A file operation of the run (metrics, previews, data) failed; checkpoints are untouched."""

    def __init__(self, err: OSError, step: int, run_dir: str | os.PathLike, saved_step: int | None) -> None:
        where = f"{err.filename}: " if err.filename else ""
        super().__init__(
            err.errno,
            f"training stopped at step {step} by a file error ({where}{_os_reason(err)}); "
            f"{last_good_checkpoint(run_dir, saved_step)}",
        )
        self.saved_step = saved_step

    def __str__(self) -> str:
        return str(self.strerror)


class PeerLost(ValueError):
    """A collective operation failed: another process of the job died, or stopped answering within the timeout."""

    def __init__(self, err: BaseException, step: int, run_dir: str | os.PathLike, saved_step: int | None) -> None:
        detail = " ".join(str(err).split())[:200]
        super().__init__(
            f"training stopped at step {step}: another process of this distributed run died or stopped answering "
            f"({type(err).__name__}: {detail}); {last_good_checkpoint(run_dir, saved_step)} "
            "(the same torchrun command). If no process died, one worked alone for longer than --dist-timeout "
            f"(rank 0 writing a large checkpoint to a slow disk, say): add a larger --dist-timeout (seconds, default "
            f"{DEFAULT_TIMEOUT_S:.0f}) to that command, or a re-run stops the same way"
        )
        self.saved_step = saved_step


def is_collective_failure(err: BaseException) -> bool:
    """Whether ``err`` is a process-group failure (a lost peer, a timed-out collective), not a bug in a step."""
    if type(err).__name__ in ("DistBackendError", "DistNetworkError", "DistStoreError"):
        return True
    text = str(err)
    markers = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Timed out", "timed out")
    return isinstance(err, RuntimeError) and ("gloo" in text or "NCCL" in text) and any(m in text for m in markers)
