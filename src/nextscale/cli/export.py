"""Export a training run's EMA (or raw) weights as a pretrained folder.

Examples:
    nextscale export --run runs/fm-var --out models/fashion-mnist       # pipeline folder (transformer run)
    nextscale export --run runs/fm-tokenizer --out models/fm-tokenizer  # component folder (tokenizer run)
    nextscale sample --model models/fashion-mnist --class 0 1 2 --out grid.png
    nextscale export --run runs/scenes --out models/scenes --recommend cfg=3 top_k=10   # settings to sample with
    nextscale export --run runs/mine-var --step 500 --out models/mine-500   # an earlier checkpoint the run kept

A transformer run becomes a pipeline folder (pipeline.json + tokenizer/ + transformer/, each with
config.json and model.safetensors), loadable with Pipeline.from_pretrained; a tokenizer run becomes
one component folder. --recommend records the sampling settings the model is meant to be used with in
pipeline.json (as ``Pipeline.recommend``); `sample`, `edit`, `demo` and `evaluate` use them for the flags left out.
Without cfg among them, a run trained with its own `--preview-cfg` (not the default 1.5) records that cfg, so that
every command samples the model as its previews did (a masked-sampler-head run keeps its starting model's settings).
Reads the newest readable checkpoint, or with --step N that step's (the step a held-out warning names, when the
run still keeps it: `nextscale info RUN` lists them; --run RUN/checkpoints/step-N.pt works too); takes seconds on a
CPU. An export over an existing
pipeline folder replaces that pipeline whole (written beside it, then swapped in: none of its old components stay,
and an interrupted export leaves the old pipeline loadable); other files in the folder stay. An --out that is a
training run, lies in a run's checkpoints/ or tokenizer/ folder, or whose tokenizer/ or transformer/ is a training
run (runs/demo of `demo --train`) is refused.
The held-out evaluations a run logs measure its raw weights (split "eval" in metrics.jsonl, and the points of
`nextscale scaling`) and, with an EMA, the EMA weights that export writes ("eval_ema"); export --raw to measure the
raw weights with `nextscale evaluate --loss` (the EMA weights score differently, usually better once training is
long). The exported weights' checkpoint, step and EMA/raw choice are recorded beside them in export.json
(transformer/export.json of a pipeline), and `nextscale evaluate` reports them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nextscale.cli.common import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run directory")
    parser.add_argument("--out", required=True, help="output folder (pipeline or component folder)")
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="export the checkpoint of this step instead of the newest (one the run keeps: the newest "
        "--keep-checkpoints of them, 3 by default)",
    )
    parser.add_argument(
        "--recommend",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="sampling settings the pipeline recommends for flags left out, e.g. cfg=3 top_k=10 (keys: "
        "cfg, top_k, top_p, temperature, masked_sampling; none: off); transformer runs only",
    )


def recommended_settings(pairs: list[str] | None) -> dict | None:
    """``--recommend KEY=VALUE ...`` as checked sampling settings (numbers, true/false, none)."""
    if pairs is None:
        return None
    from nextscale.sampling.guidance import SamplingConfig
    from nextscale.sampling.pipeline_folder import RECOMMENDABLE

    settings: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in RECOMMENDABLE:
            raise ValueError(f"--recommend takes KEY=VALUE with KEY one of {', '.join(RECOMMENDABLE)}; got {pair!r}")
        settings[key] = _setting_value(key, text.strip())
    try:
        SamplingConfig(**settings)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--recommend {' '.join(pairs)}: {err}") from None
    return settings


def _setting_value(key: str, text: str) -> object:
    lowered = text.lower()
    if lowered == "none":
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text) if key == "top_k" else float(text)
    except ValueError:
        raise ValueError(f"--recommend {key}={text}: not a number (or true, false, none)") from None


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.convert_output import write_pipeline
    from nextscale.training.export import (
        PIPELINE_FILE,
        check_export_out,
        export_run,
        read_export_record,
        read_run_config,
        run_kind,
        with_preview_cfg,
    )
    from nextscale.training.run_lock import still_training_note

    out = Path(args.out)
    if (Path(args.run) / PIPELINE_FILE).is_file():  # a second export of an export
        raise ValueError(
            f"--run {args.run} is a pipeline folder, exported already: sample, edit or evaluate it with --model "
            f"{args.run}; --run takes a training run directory (the --run-dir of `train` or `train-tokenizer`)"
        )
    run_dir, checkpoint = chosen_checkpoint(Path(args.run), args.step)
    check_output_dir(out, "--out")
    check_export_out(run_dir, out)
    recommended = recommended_settings(args.recommend)
    options = {"raw": args.raw, "checkpoint": checkpoint}
    note, weights_folder = "", out
    if run_kind(run_dir) == "transformer":
        recommended, note = with_preview_cfg(read_run_config(run_dir), recommended)
        write_pipeline(out, lambda staging: export_run(run_dir, staging, recommended=recommended, **options))
        weights_folder = out / "transformer"
    elif recommended is not None:
        raise ValueError(f"--recommend is for pipelines; {run_dir} is a tokenizer run, which exports one component")
    else:
        export_run(run_dir, out, **options)
    loaded = read_export_record(weights_folder)  # what was exported: the newest checkpoint may have been skipped
    which = "EMA" if loaded.weights == "ema" else "raw" if args.raw else "raw (the run keeps no EMA: --ema-decay none)"
    print(f"exported {which} weights of {run_dir} (step {loaded.step}) to {out}{note}")
    live = still_training_note(run_dir, loaded.step)
    if live is not None:
        print(f"note: {live}", file=sys.stderr)
    return 0


def chosen_checkpoint(run: Path, step: int | None) -> tuple[Path, Path | None]:
    """(run directory, checkpoint file or None for the newest) from ``--run`` (a run, or one of its checkpoint
    files) and ``--step``."""
    from nextscale.training.checkpoint import CHECKPOINT_DIR, checkpoint_path, checkpoint_step, list_checkpoints

    # --run RUN/checkpoints/step-N.pt, kept or not (a step pruned since is named with the steps the run keeps);
    # absolute, so that a bare step-N.pt given from inside checkpoints/ is seen as one too
    if run.suffix == ".pt" and not run.is_dir():
        run = run.absolute()
    if run.parent.name == CHECKPOINT_DIR and run.suffix == ".pt" and not run.is_dir():
        named = checkpoint_step(run)
        if step is not None and step != named:
            raise ValueError(f"--run {run} is the checkpoint of step {named}, not --step {step}: give one of them")
        if run.is_file():
            return run.parent.parent, run
        run, step = run.parent.parent, named
    if step is None:
        return run, None
    path = checkpoint_path(run, step)
    if not path.is_file():
        kept = ", ".join(str(checkpoint_step(found)) for found in list_checkpoints(run)) or "none"
        raise FileNotFoundError(
            f"{run} keeps no checkpoint of step {step} (steps kept: {kept}; a run keeps the newest --keep-checkpoints "
            "of them, 3 by default): pass one of those to --step, or leave --step out for the newest"
        )
    return run, path
