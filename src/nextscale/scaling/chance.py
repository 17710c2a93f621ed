"""Runs whose held-out loss is that of the uniform guess, ln(vocab size): the model learned nothing, and its point
would bend or flatten a power law. A default lr scaled down to a small batch does this silently (5e-06 at batch 16).

A sweep's runs (``chance_notes``) and the rows of a table with a vocab_size column, such as a points.csv given to
`scaling fit --csv` (``table_chance_notes``), get the same note."""

from __future__ import annotations

import math

from nextscale.training.chance import at_chance  # training notes a run at chance too


def chance_notes(runs) -> list[str]:
    """One line for each run (``RunSummary``) whose last held-out loss is at chance, with what to change."""
    notes = []
    for run in runs:
        if run.evals and run.vocab_size is not None and at_chance(run.evals[-1].loss, run.vocab_size):
            notes.append(_note(run.run, run.evals[-1].loss, run.vocab_size, run.evals[-1].step))
    return notes


def table_chance_notes(rows: list[dict[str, str]]) -> list[str]:
    """``chance_notes`` of a table's rows (``sweep.read_table``): those whose "loss" is at chance for their
    "vocab_size". Rows without either value (points.csv files written before vocab_size) get no note; the fit
    itself refuses a loss that is not a number."""
    notes = []
    for index, row in enumerate(rows):
        loss, vocab_size = _number(row.get("loss")), _number(row.get("vocab_size"))
        if loss is None or vocab_size is None or vocab_size < 2 or not at_chance(loss, int(vocab_size)):
            continue
        step = _number(row.get("step"))
        notes.append(
            _note(row.get("run") or f"row {index + 1}", loss, int(vocab_size), None if step is None else int(step))
        )
    return notes


def _note(name: str, loss: float, vocab_size: int, step: int | None) -> str:
    steps = "" if step is None else f" in {step} steps"
    return (
        f"note: {name}'s held-out loss {loss:.4f} is ln({vocab_size}) = {math.log(vocab_size):.4f}, the uniform "
        f"guess: the model learned nothing{steps}; give a higher --lr after `--` (or a --preset) or more steps"
    )


def _number(text: str | None) -> float | None:
    """A table cell as a finite number, or None (empty, missing or not a number)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
