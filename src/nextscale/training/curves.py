"""Training curves from a run directory's ``metrics.jsonl``: read them, and draw them with matplotlib.

The plot has one panel per metric family that a person looks at first: the training loss, the held-out
loss (or reconstruction PSNR for a tokenizer) and one line per scale for the per-scale metrics, so
that "the coarse scales learn first" or "scale 5 stopped improving" is visible at a glance. A run that kept an
EMA also logged the held-out metrics of the EMA weights (split "eval_ema", the weights ``export`` writes): the
held-out loss panel draws them beside the raw weights' line, and a tokenizer's EMA PSNR gets a panel of its own.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from nextscale.pretrained import atomic_write
from nextscale.training.metrics import METRICS_FILE, read_metrics_records

# (split, metric family) panels in the order they are drawn; families missing from a run are skipped
PANELS = (
    ("train", "loss"),
    ("eval", "loss"),
    ("eval", "scale_loss"),
    ("eval", "token_error"),
    ("train", "recon_loss"),
    ("eval", "psnr"),
    ("eval_ema", "psnr"),
    ("train", "code_usage"),
)
EMA_SPLIT = "eval_ema"  # held-out metrics of the EMA weights, logged beside the raw weights' "eval"


X_AXES = ("step", "samples", "tokens")  # what the x axis counts: optimizer steps, or what they have seen


def steps_to_x(run_dir: str | os.PathLike, x: str) -> tuple[float, str]:
    """(factor from optimizer steps to the ``x`` axis, axis label), from the run's config.json.

    A step sees ``batch_size`` samples (the global batch) and each sample ``tokens`` targets: every scale of a
    next-scale model (130 for scales 1-2-3-4-6-8), or the ``keep_tokens`` a run with token dropping keeps, the one map
    of the raster baseline (64 for 8x8). Runs of different kinds compare at equal data only on these axes, not by
    step.
    """
    if x not in X_AXES:
        raise ValueError(f"x axis must be one of {X_AXES}, got {x!r}")
    if x == "step":
        return 1.0, "step"
    path = Path(run_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
        batch = int(config["train"]["batch_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--x {x} needs the run's batch size from {path}, which cannot be read ({err})") from err
    if x == "samples":
        return float(batch), "samples seen"
    if config.get("kind") != "transformer":
        raise ValueError(f"--x tokens counts a transformer's target tokens; {run_dir} is not a transformer run")
    if config.get("model_class") == "RasterTransformer":
        per_sample = int(config["transformer"]["side"]) ** 2
    else:
        per_sample = sum(int(side) ** 2 for side in config["transformer"]["scale_sides"])
        objective = config.get("objective") or {}
        if objective.get("keep_tokens") is not None:  # token dropping: the loss sees the kept tokens only
            per_sample = min(per_sample, int(objective["keep_tokens"]))
        if objective.get("progressive"):  # scales join over the run: a full sequence is the most a step sees
            return float(batch * per_sample), "tokens seen (at most: progressive training saw fewer scales early)"
    return float(batch * per_sample), "tokens seen"


def read_metrics(run_dir: str | os.PathLike) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{split: {metric: [(step, value), ...]}}`` from ``run_dir/metrics.jsonl`` (steps ascending).

    A half-written last line (the run is still writing, or was killed mid-write) is skipped.

    Raises:
        FileNotFoundError: the run has no metrics file yet.
        ValueError: an earlier line is not a metrics record (the file is named with its line number).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a run directory of train or train-tokenizer")
    series: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for number, record in read_metrics_records(path):
        try:
            step, split = int(record.pop("step")), str(record.pop("split"))
            values = {name: float(value) for name, value in record.items()}
        except (KeyError, TypeError, ValueError) as err:
            reason = f"no {err.args[0]!r} entry" if isinstance(err, KeyError) else str(err)
            raise ValueError(f"{path}:{number} is not a metrics record ({reason}); delete or repair that line") from err
        for name, value in values.items():
            series[split][name].append((step, value))
    return {split: {name: sorted(points) for name, points in metrics.items()} for split, metrics in series.items()}


def family(metrics: dict[str, list[tuple[int, float]]], name: str) -> dict[str, list[tuple[int, float]]]:
    """The curves of one family: ``{"loss": ...}`` for a scalar, ``{"scale0": ..., "scale1": ...}`` per scale."""
    if name in metrics:
        return {name: metrics[name]}
    prefix = f"{name}/scale"
    per_scale = {key.removeprefix(f"{name}/"): points for key, points in metrics.items() if key.startswith(prefix)}
    return dict(sorted(per_scale.items(), key=lambda item: int(item[0].removeprefix("scale"))))


def panel_curves(series: dict[str, dict[str, list[tuple[int, float]]]], split: str, name: str) -> dict:
    """The labelled curves of one panel: ``family`` of the split, and for a held-out scalar (the loss) of a run
    that kept an EMA, ``{"raw weights": ..., "EMA weights": ...}``, so the line users sample from is in view."""
    curves = family(series.get(split, {}), name)
    ema = series.get(EMA_SPLIT, {}).get(name) if split == "eval" else None
    if ema and list(curves) == [name]:
        return {"raw weights": curves[name], "EMA weights": ema}
    return curves


def run_kind(metrics: dict[str, dict[str, list[tuple[int, float]]]]) -> str | None:
    """ "tokenizer" or "transformer" by the metrics a run logged (None when it logged neither kind's)."""
    names = {name.split("/")[0] for split in metrics.values() for name in split}
    if names & {"recon_loss", "psnr", "code_usage"}:
        return "tokenizer"
    if names & {"scale_loss", "token_error"}:
        return "transformer"
    return None


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike, title: str | None = None, x: str = "step") -> Path:
    """Draw the run's curves into one PNG (written atomically) and return its path.

    Raises:
        ImportError: matplotlib is missing (``pip install 'nextscale[eval]'``).
        ValueError: the run logged none of the plotted metrics.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or wanted
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install 'nextscale[eval]'") from err
    series = read_metrics(run_dir)
    factor, x_label = steps_to_x(run_dir, x)
    panels = [(split, name, curves) for split, name in PANELS if (curves := panel_curves(series, split, name))]
    if not panels:
        raise ValueError(f"{run_dir} logged none of {sorted({name for _, name in PANELS})}; nothing to plot")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, (split, name, curves) in zip(axes.flat, panels):
        for label, points in curves.items():
            steps, values = zip(*points)
            seen = [step * factor for step in steps]
            axis.plot(seen, values, label=label, marker="o" if len(points) < 12 else None, markersize=3)
        axis.set_title(f"{split} {name}")
        axis.set_xlabel(x_label)
        axis.grid(alpha=0.3)
        if len(curves) > 1:
            axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(title or str(run_dir))
    figure.tight_layout()
    path = Path(out)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path


def plot_comparison(
    run_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    labels: list[str] | None = None,
    title: str | None = None,
    x: str = "step",
) -> Path:
    """Training and held-out loss of several runs in one PNG (e.g. fine-tuned vs from scratch), against steps or
    against the samples or tokens each run has seen (``x``, see :func:`steps_to_x`).

    Raises:
        ImportError: matplotlib is missing (``pip install 'nextscale[eval]'``).
        ValueError: labels do not match the runs, the runs mix tokenizer and transformer training, or no run
            logged a loss.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install 'nextscale[eval]'") from err
    if labels is None:
        labels = [Path(run).name for run in run_dirs]
        if len(set(labels)) < len(labels):  # runs/a/fm and runs/b/fm: folder names alone would not tell them apart
            labels = [str(run) for run in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"got {len(labels)} labels for {len(run_dirs)} runs")
    series = [read_metrics(run) for run in run_dirs]
    kinds = {run_kind(metrics) for metrics in series} - {None}
    if len(kinds) > 1:  # a tokenizer's loss (reconstruction + perceptual + GAN) and a cross-entropy share no axis
        listed = ", ".join(f"{run} ({run_kind(metrics) or 'unknown'})" for run, metrics in zip(run_dirs, series))
        raise ValueError(f"compare runs of one kind: {listed}; plot a tokenizer run on its own (--run DIR)")
    axes_x = [steps_to_x(run, x) for run in run_dirs]
    figure, axes = plt.subplots(1, 2, figsize=(9.0, 3.4), squeeze=False)
    drawn = False
    for axis, split in zip(axes.flat, ("train", "eval")):
        for label, metrics, (factor, _) in zip(labels, series, axes_x):
            points = metrics.get(split, {}).get("loss")
            if points:
                steps, values = zip(*points)
                seen = [step * factor for step in steps]
                axis.plot(seen, values, label=label, marker="o" if len(points) < 12 else None, markersize=3)
                drawn = True
        # the raw weights' held-out loss: every run logs it, with or without an EMA
        raw = split == "eval" and any(EMA_SPLIT in metrics for metrics in series)
        axis.set_title(f"{'training' if split == 'train' else 'held-out'} loss{' (raw weights)' if raw else ''}")
        axis.set_xlabel(axes_x[0][1])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if not drawn:
        raise ValueError("none of the runs logged a loss; nothing to plot")
    figure.suptitle(title or " vs ".join(labels))
    if len({model_class(run) for run in run_dirs}) > 1:  # e.g. VAR against the raster baseline
        figure.text(
            0.5,
            0.01,
            "next-scale and next-token losses predict different targets: compare their trends, not values",
            ha="center",
            fontsize=8,
            style="italic",
        )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path = Path(out)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return path


def model_class(run_dir: str | os.PathLike) -> str | None:
    """The run's model class from its config.json (None when unknown)."""
    try:
        return json.loads((Path(run_dir) / "config.json").read_text()).get("model_class")
    except (OSError, ValueError, AttributeError):
        return None
