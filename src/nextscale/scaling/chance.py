"""Runs whose held-out loss is that of the uniform guess, ln(vocab size): the model learned nothing, and its point
would bend or flatten a power law. A default lr scaled down to a small batch does this silently (5e-06 at batch 16)."""

from __future__ import annotations

import math

from nextscale.training.chance import at_chance  # training notes a run at chance too


def chance_notes(runs) -> list[str]:
    """One line for each run (``RunSummary``) whose last held-out loss is at chance, with what to change."""
    notes = []
    for run in runs:
        if not run.evals or run.vocab_size is None or not at_chance(run.evals[-1].loss, run.vocab_size):
            continue
        notes.append(
            f"note: {run.run}'s held-out loss {run.evals[-1].loss:.4f} is ln({run.vocab_size}) = "
            f"{math.log(run.vocab_size):.4f}, the uniform guess: the model learned nothing in {run.evals[-1].step} "
            "steps; give a higher --lr after `--` (or a --preset) or more steps"
        )
    return notes
