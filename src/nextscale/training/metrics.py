"""Metric bookkeeping of the training loop: cross-rank reduction, per-scale naming, JSONL/TensorBoard output.

Metrics are tensors: scalars, or (K,) vectors with one value per scale, logged as ``name/scale{k}``.
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
    text = path.read_text()
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


def reduce_over_ranks(values: dict[str, torch.Tensor], mean_over: torch.Tensor | None = None) -> dict[str, float]:
    """One all-reduce for every metric, then flatten (K,) vectors into ``name/scale{k}`` entries.

    Args:
        values: scalar or (K,) tensors on this rank.
        mean_over: None averages over ranks; otherwise ``values`` are sums and this is the count to divide
            their cross-rank sums by (the cross-rank sum of ``mean_over``).
    Returns:
        Plain floats, keys sorted.
    """
    names = sorted(values)
    if not names:
        return {}
    pieces = [values[name].detach().float().reshape(-1) for name in names]
    if mean_over is None:
        flat = distributed.all_reduce_mean(torch.cat(pieces)).tolist()
    else:
        total = distributed.all_reduce_sum(torch.cat([*pieces, mean_over.float().reshape(1)]))
        flat = (total[:-1] / total[-1].clamp_min(1)).tolist()
    out, offset = {}, 0
    for name, piece in zip(names, pieces):
        chunk = flat[offset : offset + piece.numel()]
        offset += piece.numel()
        if values[name].dim() == 0:
            out[name] = chunk[0]
        else:
            out.update({f"{name}/scale{k}": value for k, value in enumerate(chunk)})
    return out


def format_metrics(metrics: dict[str, float]) -> str:
    """One log line; per-scale values are grouped: ``scale_loss=[2.1 3.4 4.0]``."""
    grouped: dict[str, list[float]] = {}
    parts = []
    for name, value in metrics.items():
        base, _, scale = name.partition("/scale")
        if scale.isdigit():
            grouped.setdefault(base, []).append(value)
        else:
            parts.append(f"{name}={value:.4g}")
    parts += [f"{name}=[{' '.join(f'{v:.3g}' for v in values)}]" for name, values in grouped.items()]
    return ", ".join(parts)


class MetricsLog:
    """``run_dir/metrics.jsonl`` plus optional TensorBoard events; a no-op on ranks other than 0."""

    def __init__(self, run_dir: str | os.PathLike, enabled: bool) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.writer: Any = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self.writer = None
            else:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "split": split, **{name: float(value) for name, value in metrics.items()}}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (a resumed run logs those steps again) and a half-written last line."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [record for _, record in read_metrics_records(self.path) if record.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))
