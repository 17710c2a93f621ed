"""Metric bookkeeping of the training loop: cross-rank reduction, per-scale naming, JSONL/TensorBoard output.

Metrics are tensors: scalars, or (K,) vectors with one value per scale, logged as ``name/scale{k}``.
A training step may have no value for a scale (token dropping kept none of its tokens): its entry in the (K,)
vector is NaN, averages over micro-batches, logged steps and ranks use the values present (``metric_mean``,
``reduce_over_ranks``), and a scale with no value at all is left out of the record, so metrics.jsonl never
holds a NaN for it (readers take a missing ``name/scale{k}`` as "no point at this step").
``MetricsLog`` appends one JSON object per logged step to ``run_dir/metrics.jsonl`` (rank 0 only) and
mirrors it to TensorBoard when the optional ``tensorboard`` package is installed (``pip install "nextscale[train]"``;
without it only the JSONL file is written).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nextscale import distributed
from nextscale.pretrained import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def read_metrics_records(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every record of a ``metrics.jsonl``, in file order; blank lines are skipped.

    Each record is written as one line that ends in a newline, so an unparsable last line without its newline
    is a write cut short (the run is still writing, or was killed mid-write): it is skipped, never a finished
    record. Any other line that is not a JSON object is reported.

    Raises:
        ValueError: a finished line is not a JSON object (named as ``path:line``).
    """
    path = Path(path)
    # bytes that are no UTF-8 (garbage a crash left) make their line unparsable, named below, rather than the file
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as err:  # json.JSONDecodeError is a ValueError
            if number == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(
                f"{path}:{number} is not a metrics record ({err}); delete or repair that line (every line is one "
                "JSON object)"
            ) from err
        records.append((number, record))
    return records


def metric_mean(values: list[torch.Tensor]) -> torch.Tensor:
    """The mean of one metric's values from several micro-batches or logged steps.

    Args:
        values: scalars, or (K,) per-scale vectors whose NaN entries mean "no value for this scale here".

    Returns:
        The mean; per scale over the values present (NaN only where none is). A NaN scalar stays NaN: a NaN loss
        is an error the loop must see, never a missing value. Each value counts once, not by the tokens behind it
        (every micro-batch of a step shares one token-dropping draw, so their counts are alike).
    """
    stacked = torch.stack(values)
    return stacked.mean(0) if stacked.dim() == 1 else stacked.nanmean(0)


def merge_rank_windows(windows: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The metrics windows that the ranks of a checkpointed run kept, merged into one that any number of ranks can
    each start from (a resume on another number of processes).

    The logged line is the mean over ranks of each rank's mean over the window's steps, that is the mean over
    steps of each step's cross-rank mean: with every new rank starting from those per-step means, the line after
    the resume averages the same values as an uninterrupted run. Exact for scalars and for per-scale values every
    rank has at every step; a per-scale value only some ranks have (token dropping) is weighted a little
    differently, as its cross-rank mean already is.

    Args:
        windows: per rank ``{name: (T,) or (T, K) tensor}``, the values of the T steps since the last line.

    Returns:
        ``({name: (T,) or (T, K) per-step cross-rank means}, names left out)``: a metric the ranks kept for
        different steps (or shapes) cannot be merged.
    """
    merged, left_out = {}, []
    for name in sorted({name for window in windows for name in window}):
        values = [window.get(name) for window in windows]
        if any(value is None or value.shape != values[0].shape for value in values):
            left_out.append(name)
            continue
        stacked = torch.stack(values).float()  # (R, T) or (R, T, K)
        merged[name] = stacked.mean(0) if stacked.dim() == 2 else stacked.nanmean(0)
    return merged, left_out


def reduce_over_ranks(values: dict[str, torch.Tensor], mean_over: torch.Tensor | None = None) -> dict[str, float]:
    """One all-reduce for every metric, then flatten (K,) vectors into ``name/scale{k}`` entries.

    Args:
        values: scalar or (K,) tensors on this rank.
        mean_over: None averages over ranks, a per-scale entry over the ranks that have a value for it (NaN
            marks none; an entry no rank has is left out of the result); otherwise ``values`` are sums and this
            is the count to divide their cross-rank sums by (the cross-rank sum of ``mean_over``).
    Returns:
        Plain floats, keys sorted.
    """
    names = sorted(values)
    if not names:
        return {}
    pieces = [values[name].detach().float().reshape(-1) for name in names]
    flat = torch.cat(pieces)
    if mean_over is None:
        # Worked example, 2 ranks, scale_loss (0.5, NaN) and (0.7, NaN): scale0 = 1.2 / 2, scale1 has no value.
        absent = torch.cat(
            [
                piece.isnan() if values[name].dim() else torch.zeros_like(piece, dtype=torch.bool)
                for name, piece in zip(names, pieces)
            ]
        )
        total = distributed.all_reduce_sum(torch.cat([flat.masked_fill(absent, 0.0), (~absent).float()]))
        sums, counts = total.split(flat.numel())
        reduced, present = (sums / counts).tolist(), (counts > 0).tolist()
    else:
        total = distributed.all_reduce_sum(torch.cat([flat, mean_over.float().reshape(1)]))
        reduced, present = (total[:-1] / total[-1].clamp_min(1)).tolist(), [True] * flat.numel()
    out, offset = {}, 0
    for name, piece in zip(names, pieces):
        chunk = range(offset, offset + piece.numel())
        offset += piece.numel()
        if values[name].dim() == 0:
            out[name] = reduced[chunk[0]]
        else:
            out.update({f"{name}/scale{k}": reduced[i] for k, i in enumerate(chunk) if present[i]})
    return out


# What a per-scale list of a metric means, said once in its log line (metrics.jsonl keeps the plain names).
PER_SCALE_NOTES = {
    "psnr": "dB, reconstructed from the first 1..K scales",
    "mse": "reconstructed from the first 1..K scales",
    "code_usage": "% of the codebook, per scale",
}


def format_metrics(metrics: dict[str, float]) -> str:
    """One log line; per-scale values are grouped, a scale without a value shown as "-": ``scale_loss=[2.1 - 4.0]``,
    ``psnr=[18 19.3 21.4] (dB, reconstructed from the first 1..K scales)``."""
    grouped: dict[str, dict[int, float]] = {}
    parts = []
    for name, value in metrics.items():
        base, _, scale = name.partition("/scale")
        if scale.isdigit():
            grouped.setdefault(base, {})[int(scale)] = value
        else:
            parts.append(f"{name}={value:.4g}")
    for name, by_scale in grouped.items():
        shown = (f"{by_scale[k]:.3g}" if k in by_scale else "-" for k in range(max(by_scale) + 1))
        note = f" ({PER_SCALE_NOTES[name]})" if name in PER_SCALE_NOTES else ""
        parts.append(f"{name}=[{' '.join(shown)}]{note}")
    return ", ".join(parts)


class MetricsLog:
    """``run_dir/metrics.jsonl`` plus optional TensorBoard events; a no-op on ranks other than 0.

    The TensorBoard writer opens at the first record, after :meth:`truncate_after`: its ``purge_step`` makes
    TensorBoard drop the points an earlier start logged after the resumed step, as the JSONL file drops them."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.tensorboard_dir = Path(run_dir) / "tensorboard"
        self.enabled = enabled
        self.writer: Any = None
        self.purge_step: int | None = None  # the first step this start logs again (set by truncate_after)
        self._summary_writer: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._summary_writer = SummaryWriter

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **{name: float(value) for name, value in metrics.items()}}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._summary_writer is not None and self.writer is None:
            self.writer = self._summary_writer(str(self.tensorboard_dir), purge_step=self.purge_step)
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (a resumed run logs those steps again) and a half-written last line;
        TensorBoard drops those steps' points when this log writes its first record."""
        if not self.enabled:
            return
        self.purge_step = step + 1
        if self.writer is not None:  # opened without the purge: the next record reopens it with it
            self.writer.close()
            self.writer = None
        if not self.path.is_file():
            return
        kept = [record for _, record in read_metrics_records(self.path) if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))
