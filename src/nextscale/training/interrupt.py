"""Stop training cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the current step, checkpoint it, then stop.

The first signal only sets a flag that the loop reads between optimizer steps. A KeyboardInterrupt raised
in the middle of a step could land between two optimizers' updates or before the EMA update, and a
checkpoint of that state would not resume exactly. A second Ctrl-C raises KeyboardInterrupt at once and
saves nothing (for a step that hangs); so does a Ctrl-C before training starts (while data and models load),
and ``unsaved_interrupt_message`` then says what there is to resume.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from nextscale import distributed
from nextscale.training.checkpoint import checkpoint_step, latest_checkpoint

log = distributed.get_logger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after checkpointing; the message says where and how to resume.

    A KeyboardInterrupt, so code that does not know it still stops as on a plain Ctrl-C.
    """

    def __init__(self, step: int, path: Path | None) -> None:
        where = f"saved {path}" if path is not None else "nothing new to save"
        super().__init__(f"interrupted at step {step} ({where}); re-run the same command to resume from step {step}")
        self.step, self.path = step, path


def unsaved_interrupt_message(run_dir: Path) -> str:
    """The line for a Ctrl-C that saved nothing (before the first step, or a second Ctrl-C): the checkpoint the same
    command resumes from, or that there is none and the same command starts the run (``run_dir`` already gone:
    the failed start removed the folder it had created)."""
    saved = latest_checkpoint(run_dir)
    if saved is not None:
        step = checkpoint_step(saved)
        return (
            f"interrupted before saving a checkpoint (the newest is {saved}); re-run the same command to resume "
            f"from step {step}"
        )
    where = f"removed {run_dir}, which it had created" if not run_dir.exists() else f"{run_dir} holds no checkpoint"
    return (
        f"interrupted before the first checkpoint, nothing was saved ({where}); re-run the same command to start "
        "the run"
    )


class StopRequest:
    """While entered, SIGINT and SIGTERM set ``requested`` instead of stopping the process."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}
        self._pid = os.getpid()

    def __enter__(self) -> StopRequest:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():  # Python sets handlers only there
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: quit now
        self.requested = True
        if os.getpid() != self._pid:
            # a forked DataLoader worker inherits the handler, and a Ctrl-C reaches the terminal's whole process
            # group: the worker carries on serving batches, and only the training process says what happens
            return
        log.warning(
            "%s: stopping after this step to save a checkpoint (Ctrl-C again quits without saving)",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
