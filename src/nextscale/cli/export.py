"""Export a training run's EMA (or raw) weights as a pretrained folder.

Examples:
    nextscale export --run runs/fm-var --out models/fashion-mnist       # pipeline folder (transformer run)
    nextscale export --run runs/fm-tokenizer --out models/fm-tokenizer  # component folder (tokenizer run)
    nextscale sample --model models/fashion-mnist --class 0 1 2 --out grid.png
    nextscale export --run runs/scenes --out models/scenes --recommend cfg=3 top_k=10   # settings to sample with

A transformer run becomes a pipeline folder (pipeline.json + tokenizer/ + transformer/, each with
config.json and model.safetensors), loadable with Pipeline.from_pretrained; a tokenizer run becomes
one component folder. --recommend records the sampling settings the model is meant to be used with in
pipeline.json (as ``Pipeline.recommend``); `sample`, `demo` and `evaluate` use them for the flags left out.
Reads the newest readable checkpoint; takes seconds on a CPU. An export over an existing
pipeline folder replaces that pipeline whole (written beside it, then swapped in: none of its old components stay,
and an interrupted export leaves the old pipeline loadable); other files in the folder stay. An --out that is a
training run, lies in a run's checkpoints/ or tokenizer/ folder, or whose tokenizer/ or transformer/ is a training
run (runs/demo of `demo --train`) is refused.
The held-out evaluations a run logs measure its raw weights (split "eval" in metrics.jsonl, and the points of
`nextscale scaling`) and, with an EMA, the EMA weights that export writes ("eval_ema"); export --raw to measure the
raw weights with `nextscale evaluate --loss` (the EMA weights score differently, usually better once training is
long).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run directory")
    parser.add_argument("--out", required=True, help="output folder (pipeline or component folder)")
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
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
    from nextscale.training.export import check_export_out, export_run, read_run_config, run_kind

    out = Path(args.out)
    check_output_dir(out, "--out")
    check_export_out(args.run, out)
    recommended = recommended_settings(args.recommend)
    if run_kind(args.run) == "transformer":
        write_pipeline(out, lambda staging: export_run(args.run, staging, raw=args.raw, recommended=recommended))
    elif recommended is not None:
        raise ValueError(f"--recommend is for pipelines; {args.run} is a tokenizer run, which exports one component")
    else:
        export_run(args.run, out, raw=args.raw)
    kept_ema = read_run_config(args.run).get("train", {}).get("ema_decay") is not None
    which = "raw" if args.raw else "EMA" if kept_ema else "raw (the run keeps no EMA: --ema-decay none)"
    print(f"exported {which} weights of {args.run} to {out}")
    return 0
