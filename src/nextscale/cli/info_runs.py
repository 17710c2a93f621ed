"""`nextscale info` on a training run, one of its checkpoints, a run that never started, or a scaling sweep of runs:
progress, last metrics, checkpoints and the next command, from the run's config, metrics log and file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nextscale.cli.info_format import crop_margin_line, duration, millions
from nextscale.training.crop_margin import CROP_MARGIN_FIELD


def describe_run(folder: Path) -> dict[str, Any]:
    from nextscale.training.checkpoint import checkpoint_step, list_checkpoints
    from nextscale.training.export import read_run_config

    config = read_run_config(folder)
    train, model = config.get("train", {}), config.get(config["kind"], {})
    if not isinstance(train, dict) or not isinstance(model, dict):  # else an AttributeError traceback
        raise ValueError(
            f"{folder / 'config.json'} is damaged: its 'train' and {config['kind']!r} entries must be JSON objects; "
            "re-create the run, or restore the file"
        )
    total = train.get("total_steps")
    checkpoints = list_checkpoints(folder)
    step = checkpoint_step(checkpoints[-1]) if checkpoints else 0
    model_class = f" ({config['model_class']})" if "model_class" in config else ""
    report: dict[str, Any] = {"what": f"{folder}: a {config['kind']} training run{model_class}"}
    report["progress"] = f"step {step} of {total}" + _progress_state(folder, step == total)
    report["data"] = _run_data(config)
    shape = {key: model[key] for key in ("depth", "embed_dim", "vocab_size", "scale_sides") if key in model}
    if shape:
        report["model"] = shape
    if CROP_MARGIN_FIELD in config:
        report["crop_margin"] = crop_margin_line(config[CROP_MARGIN_FIELD])
    report["batch"] = f"{train.get('batch_size')} per step, precision {train.get('precision')}"
    report["checkpoints"] = [path.name for path in checkpoints] or "none yet"
    train_line, eval_line, eval_ema_line = _last_metrics(folder / "metrics.jsonl")
    if train_line:
        report["last_train"] = train_line
    if eval_line:
        report["last_eval"] = eval_line
    if eval_ema_line:  # the held-out metrics of the EMA weights, the ones export writes
        report["last_eval_ema"] = eval_ema_line
    speed = float(train_line.get("samples_per_second", 0) or 0)
    if isinstance(total, int) and step < total and speed > 0 and train.get("batch_size"):
        seconds = (total - step) * train["batch_size"] / speed
        report["time_left"] = f"about {duration(seconds)} at the last logged speed ({speed:.4g} samples/s)"
    if config["kind"] == "transformer" and checkpoints:
        report["next"] = f"nextscale export --run {folder} --out DIR  (or sample --model {folder})"
    elif config["kind"] == "tokenizer" and checkpoints:
        data = config.get("data") or "DATA"
        report["next"] = (
            f"nextscale tokenize --tokenizer {folder} --data {data} --out DIR  (then train --tokenizer {folder} "
            "--tokens DIR)"
        )
    return report


def _progress_state(folder: Path, finished: bool) -> str:
    """After "step S of T": finished, training now (a re-run would be refused as in use), or stopped."""
    from nextscale.training.run_lock import training_process

    if finished:
        return " (finished)"
    pid = training_process(folder)
    if pid is not None:
        return f" (training now, process {pid}: newer checkpoints will follow)"
    return " (re-run its command to continue)"


def _run_data(config: dict[str, Any]) -> str:
    """What a run trains on: its --tokens folder (and the --data its held-out images come from) or its --data."""
    tokens, data = config.get("tokens"), config.get("data")
    if tokens:
        return f"token folder {tokens}" + (f"; held-out images from {data}" if data else "")
    return data or "? (not recorded)"


# The metrics log's splits that info shows: training steps, held-out metrics of the raw and of the EMA weights.
SHOWN_SPLITS = ("train", "eval", "eval_ema")


def _last_metrics(path: Path) -> tuple[dict[str, str], ...]:
    """The last record of each of :data:`SHOWN_SPLITS` in a metrics log (empty when none), summarised by
    :func:`_metrics_summary`."""
    last: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: the records before it still count
            if isinstance(record, dict) and record.get("split") in SHOWN_SPLITS:
                last[record["split"]] = record
    # eval records carry every scale: their count also pads a train record whose last scales had no value
    scales = [key.partition("/scale")[2] for record in last.values() for key in record]
    num_scales = 1 + max((int(scale) for scale in scales if scale.isdigit()), default=-1)
    return tuple(_metrics_summary(last.get(split, {}), num_scales) for split in SHOWN_SPLITS)


def _metrics_summary(record: dict[str, Any], num_scales: int = 0) -> dict[str, str]:
    """One record as name -> value (4 significant digits); per-scale entries ("psnr/scale0", ...) as one list of
    at least ``num_scales`` entries in scale order, "-" for a scale the record has no value for (a step that kept
    none of its tokens)."""
    summary: dict[str, str] = {}
    per_scale: dict[str, dict[int, str]] = {}
    for key, value in record.items():
        if key == "split":
            continue
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        name, _, scale = key.partition("/scale")
        if scale.isdigit():
            per_scale.setdefault(name, {})[int(scale)] = shown
        else:
            summary[key] = shown
    for name, by_scale in per_scale.items():
        count = max(num_scales, max(by_scale) + 1)
        summary[name] = "[" + " ".join(by_scale.get(k, "-") for k in range(count)) + "]"
    return summary


def only_run_lock(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but a training lock file: `train` takes the lock before it writes
    config.json, so a run stopped (Ctrl-C, a refused flag) before that leaves only the lock."""
    from nextscale.training.run_lock import LOCK_NAME

    return [child.name for child in folder.iterdir()] == [LOCK_NAME]


def describe_unstarted_run(folder: Path) -> dict[str, Any]:
    from nextscale.training.run_lock import training_process

    pid = training_process(folder)
    if pid is not None:
        return {
            "what": f"{folder}: a training run starting now (process {pid}): no config or checkpoint yet",
            "next": f"nextscale info {folder}  (again in a moment)",
        }
    return {
        "what": f"{folder}: a training run that stopped before it saved anything (only its lock file is here)",
        "next": f"re-run the `nextscale train ... --run-dir {folder}` command to start it (nothing to resume)",
    }


def describe_checkpoint(path: Path, step: int) -> dict[str, Any]:
    from nextscale.training.checkpoint import verify_checkpoint

    intact = verify_checkpoint(path)
    run = path.absolute().parent.parent  # a bare step-N.pt named from inside checkpoints/ has "." as its parent
    return {
        "what": f"{path}: a nextscale training checkpoint (step {step})",
        "run": str(run),
        "intact": "yes (checksum or zip CRCs verified)" if intact else "NO: damaged; resuming skips it",
        "next": f"nextscale info {run}",
    }


def describe_sweep(folder: Path) -> dict[str, Any]:
    """A `nextscale scaling run` folder: one line per run (size, compute, progress, last held-out loss)."""
    from nextscale.scaling.sweep import collect_sweep

    runs = collect_sweep(folder)
    finished = sum(run.finished for run in runs)
    report: dict[str, Any] = {"what": f"{folder}: a scaling sweep of {len(runs)} runs ({finished} finished)"}
    for run in runs:
        last = run.evals[-1] if run.evals else None
        held_out = f"L_avg {last.loss:.4g} at step {last.step}, C = {last.compute:.3g} FLOPs" if last else "no eval yet"
        status = "finished" if run.finished else f"step {run.saved_step} of {run.total_steps}"
        report[run.run] = f"N = {millions(run.params)}, {status}; {held_out}"
    report["next"] = f"nextscale scaling fit --sweep {folder}  (and plot, samples)"
    return report
