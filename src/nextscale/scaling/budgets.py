"""Refuse a table whose rows come from different sweeps: the points of one fit must share the data (trained on and
evaluated on, and its vocabulary), the training budget, the held-out set and whose weights were measured, or the
law (and the "seeds" of a depth) mixes unlike runs.

A sweep keeps these equal by its settings (sweep.json); a CSV table made by joining two points.csv files does not.
"""

from __future__ import annotations

# Columns every row of one sweep shares (points.csv): the training and held-out data and its vocabulary size (two
# sweeps of one schedule on other datasets differ only there), the batch, the tokens per image (data schedule and
# token dropping), the held-out sequences per evaluation and whose weights were evaluated. points.csv files written
# before the data columns lack them, and a table joined from old and new files has them empty: not compared.
SHARED_COLUMNS = ("train_data", "eval_data", "vocab_size", "batch_size", "tokens_per_sample", "eval_samples", "weights")
# A --compute-budget sweep gives each depth its own step count; its runs' compute agrees to the rounding of steps
# (and to within a few % for sweeps planned before compute told per-token from per-image parameters).
COMPUTE_TOLERANCE = 0.1
FIX = "fit one sweep's points.csv at a time (or --sweep SWEEP)"


def check_one_budget(rows: list[dict[str, str]], source: str) -> None:
    """Raise ValueError (one line naming the column and its values) when ``rows`` mix sweeps: a shared column
    with several values, different step counts that are not one compute budget, or one depth and seed twice.
    Columns a table lacks, and empty values, are not compared."""
    for name in SHARED_COLUMNS:
        values = _values(rows, name)
        if len(values) > 1:
            raise ValueError(f"the rows of {source} come from different sweeps: {name} {_listed(values)}; {FIX}")
    steps = _values(rows, "total_steps")
    if len(steps) > 1 and not _one_compute_budget(rows):
        raise ValueError(
            f"the rows of {source} come from different budgets: total_steps {_listed(steps)} (and compute not one "
            f"budget); {FIX}"
        )
    if "depth" in rows[0] and "seed" in rows[0]:
        seen: dict[tuple[str, str], int] = {}
        for index, row in enumerate(rows):
            key = ((row.get("depth") or "").strip(), (row.get("seed") or "").strip())
            if key in seen:
                raise ValueError(
                    f"rows {seen[key] + 1} and {index + 1} of {source} are both depth {key[0]}, seed {key[1]}: they "
                    f"come from different sweeps, not seeds; {FIX}"
                )
            seen[key] = index


def _values(rows: list[dict[str, str]], name: str) -> set[str]:
    if name not in rows[0]:
        return set()
    return {(row.get(name) or "").strip() for row in rows} - {""}


def _listed(values: set[str]) -> str:
    return " vs ".join(sorted(values, key=lambda value: (len(value), value)))


def _one_compute_budget(rows: list[dict[str, str]]) -> bool:
    try:
        compute = [float(row["compute"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        return False
    return min(compute) > 0 and max(compute) <= min(compute) * (1 + COMPUTE_TOLERANCE)
