"""One training process per run directory: an advisory lock file, ``run_dir/.lock``.

Two commands training into the same folder would interleave checkpoints and metrics, so the second one
refuses with the PID of the first. The lock is ``fcntl.flock`` on the file: the kernel drops it when its
holder exits, even by SIGKILL, so a lock left by a dead process is never "held" and is taken over (the PID
it records is only reported); forked children (DataLoader workers) hold it with their parent until they
exit. With torchrun only rank 0 takes the lock; the other ranks learn its result through one all-reduce, so
every rank fails alike. A run directory that cannot be created or written to is refused here too, with one
sentence, before any data or model is loaded. On a file system that has no locks (Lustre without ``-o flock``,
NFS without a lock daemon) the run goes on unguarded, with a warning that says so. A single-process run whose
command created the folder and failed or was interrupted before its first checkpoint removes the folder again,
still holding the lock (under torchrun it stays: the other ranks may still be writing to it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from nextscale import distributed
from nextscale.training.run_dir import remove_unstarted_run

LOCK_NAME = ".lock"
# flock's errors on file systems that do not lock (Lustre mounted without -o flock: ENOSYS; NFS without a lock
# daemon: ENOLCK; some FUSE and SMB mounts: EOPNOTSUPP or EINVAL): the run goes on unguarded, with a warning
UNSUPPORTED_LOCK_ERRORS = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
log = distributed.get_logger(__name__)


class RunDirBusyError(ValueError):
    """Another live process is training into the run directory (a user error: the CLI prints one line)."""


class RunDirUnwritableError(OSError):
    """The run directory cannot be created or written to (permissions, a read-only or full disk, a file there)."""

    def __str__(self) -> str:
        return str(self.strerror)


def outermost_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist (what ``mkdir(parents=True)`` creates), or None
    when ``folder`` exists."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` and write a scratch file in it, or raise ``RunDirUnwritableError`` saying why."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=".write-test-", dir=run_dir)
        os.close(fd)
        os.remove(scratch)
    except OSError as err:
        reason = err.strerror or str(err)
        raise RunDirUnwritableError(
            err.errno,
            f"cannot write to run directory {run_dir} ({reason}); nothing was trained. Choose a --run-dir you "
            "can write to, or fix its permissions or free space",
        ) from err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _recorded_pid(handle) -> int | None:
    handle.seek(0)
    text = handle.read().strip()
    return int(text) if text.isdigit() else None


def training_process(run_dir: str | os.PathLike) -> int | None:
    """The PID of the live process training into ``run_dir`` now (it holds the lock), or None; takes nothing.

    A shared lock that cannot be had means an exclusive holder; the lock is let go at once (a command starting to
    train in that instant is refused as busy and can be re-run). A PID left by a killed process is not a holder.
    """
    try:
        handle = open(Path(run_dir) / LOCK_NAME)  # noqa: SIM115 (closed below; read-only suffices for flock)
    except OSError:  # no lock file: never trained into, or not a run directory
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _recorded_pid(handle)
            return pid if pid is not None and _alive(pid) else None
        except OSError:  # a file system without locks: the recorded PID is all there is to go by
            pid = _recorded_pid(handle)
            return pid if pid is not None and pid != os.getpid() and _alive(pid) else None
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def still_training_note(run_dir: str | os.PathLike, used_step: int) -> str | None:
    """One line for a command that reads a run still training (evaluate, export), or None when it is not: the
    weights it uses are an intermediate checkpoint, and the run will save newer ones."""
    from nextscale.training.checkpoint import checkpoint_step, list_checkpoints

    pid = training_process(run_dir)
    if pid is None:
        return None
    checkpoints = list_checkpoints(run_dir)
    newest = checkpoint_step(checkpoints[-1]) if checkpoints else used_step
    return (
        f"run {run_dir} is still training (process {pid}, step {newest} so far): this uses checkpoint step {used_step}"
    )


def acquire(run_dir: str | os.PathLike):
    """Lock ``run_dir`` for this process; returns the open lock file (closing it releases the lock).

    Raises:
        RunDirBusyError: a live process holds the lock (the message names the folder and its PID).
        RunDirUnwritableError: the folder cannot be created or written to, or locking it failed (a file system
            without locks only logs a warning).
    """
    run_dir = Path(run_dir)
    check_writable(run_dir)
    handle = open(run_dir / LOCK_NAME, "a+")  # noqa: SIM115 (held open for the whole run)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _recorded_pid(handle)
        handle.close()
        if pid is not None and not _alive(pid):
            # forked children (DataLoader workers) share the lock; after their parent was killed they exit within
            # seconds, and until then the PID on record names no running process here
            raise RunDirBusyError(
                f"run directory {run_dir} is locked, but process {pid}, which locked it, is not running on this "
                "machine: processes it started (data-loading workers) hold the lock until they exit, within "
                "seconds, or it runs on another machine; retry shortly, or choose another --run-dir"
            ) from None
        holder = f"process {pid}" if pid is not None else "another process"
        raise RunDirBusyError(
            f"run directory {run_dir} is in use by {holder}; wait for it to finish (or stop it), "
            "or choose another --run-dir"
        ) from None
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno not in UNSUPPORTED_LOCK_ERRORS:
            handle.close()
            raise RunDirUnwritableError(
                err.errno, f"cannot lock run directory {run_dir} ({reason}); nothing was trained"
            ) from err
        log.warning(
            "run directory %s cannot be locked on its file system (%s): nothing stops a second command from "
            "training into it at the same time",
            run_dir,
            reason,
        )
    previous = _recorded_pid(handle)
    if previous is not None and previous != os.getpid() and not _alive(previous):
        log.warning("run directory %s was locked by process %d, which is gone; taking it over", run_dir, previous)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike, dist_info: distributed.DistInfo) -> Iterator[None]:
    """Hold the lock of ``run_dir`` (rank 0 only) for the body; released on exit, also on errors.

    When the body fails (an error, a Ctrl-C) in a single process that created ``run_dir`` and no checkpoint was
    written, the folder is removed before the lock is let go: the same command starts the run afresh.
    """
    handle, error = None, None
    created = outermost_missing(Path(run_dir))
    if dist_info.is_main:
        try:
            handle = acquire(run_dir)
        except (RunDirBusyError, OSError) as err:
            error = err
    if dist_info.is_distributed:  # every rank must stop if rank 0 could not lock
        failed = distributed.all_reduce_sum(torch.tensor(float(error is not None), device=dist_info.device))
        if failed.item() and error is None:
            error = RunDirBusyError(f"rank 0 could not lock or write to run directory {run_dir}")
    if error is not None:
        raise error
    try:
        yield
    except BaseException:
        if handle is not None and created is not None and not dist_info.is_distributed:
            remove_unstarted_run(Path(run_dir), created)
        raise
    finally:
        if handle is not None:
            handle.seek(0)
            handle.truncate()  # a released lock records no PID
            handle.close()
