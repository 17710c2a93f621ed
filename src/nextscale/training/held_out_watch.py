"""The held-out loss watch: one warning when a run starts memorising its training data instead of learning."""

from __future__ import annotations

import math


class HeldOutWatch:
    """Watches the held-out loss for the sign of memorising: a rise well above its lowest value so far.

    Small data sets (a user's first folder of a few dozen images) overfit within minutes, and the training loss
    keeps falling while it happens, so one warning says so the first time the held-out loss has risen by
    ``rise`` (a fraction) over its lowest.

    Args:
        rise: the fraction above the lowest loss that warns.
        of_ema: whether the watched loss is the EMA weights' (the ones ``export`` writes), said in the warning.
    """

    def __init__(self, rise: float = 0.1, of_ema: bool = False) -> None:
        self.rise = rise
        self.of_ema = of_ema
        self.lowest: tuple[int, float] | None = None  # (step, loss)
        self.warned = False

    def update(self, step: int, loss: float) -> str | None:
        """Record the held-out loss of ``step``; returns the warning the first time it has risen too far."""
        if not math.isfinite(loss):
            return None
        if self.lowest is None or loss < self.lowest[1]:
            self.lowest = (step, loss)
            return None
        lowest_step, lowest = self.lowest
        if self.warned or loss <= lowest * (1 + self.rise):
            return None
        self.warned = True
        weights = " of the EMA weights" if self.of_ema else ""
        return (
            f"held-out loss {loss:.3f}{weights} at step {step} is {100 * (loss / lowest - 1):.0f} % above its lowest, "
            f"{lowest:.3f} at step {lowest_step}: the model is memorising its training data rather than learning "
            "what generalises (more images, fewer --steps or more regularisation help; `nextscale export --step N` "
            "exports a kept checkpoint from before the rise)"
        )

    def state_dict(self) -> dict:
        """The watch's memory as plain data, checkpointed so that a resumed run warns as an uninterrupted one."""
        lowest = None if self.lowest is None else list(self.lowest)
        return {"lowest": lowest, "warned": self.warned, "of_ema": self.of_ema}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the memory of another loss (older checkpoints watched the raw weights' loss,
        and say nothing of it) is not carried over: this watch starts afresh."""
        if bool(state.get("of_ema", False)) != self.of_ema:
            return
        lowest = state.get("lowest")
        self.lowest = None if lowest is None else (int(lowest[0]), float(lowest[1]))
        self.warned = bool(state.get("warned", False))
