"""Export a training run's EMA (or raw) weights as a pretrained folder.

Examples:
    nextscale export --run runs/fm-var --out models/fashion-mnist       # pipeline folder (transformer run)
    nextscale export --run runs/fm-tokenizer --out models/fm-tokenizer  # component folder (tokenizer run)
    nextscale sample --model models/fashion-mnist --class 0 1 2 --out grid.png

A transformer run becomes a pipeline folder (pipeline.json + tokenizer/ + transformer/, each with
config.json and model.safetensors), loadable with Pipeline.from_pretrained; a tokenizer run becomes
one component folder. Reads the newest readable checkpoint; takes seconds on a CPU. An export over an existing
pipeline folder replaces that pipeline whole (written beside it, then swapped in: none of its old components stay,
and an interrupted export leaves the old pipeline loadable); other files in the folder stay. An --out that is a
training run, lies in a run's checkpoints/ or tokenizer/ folder, or whose tokenizer/ or transformer/ is a training
run (runs/demo of `demo --train`) is refused.
The held-out evaluations a run logs (metrics.jsonl, and the points of `nextscale scaling`) measure its raw
weights; export --raw to measure those same weights with `nextscale evaluate --loss` (the EMA weights score
differently, usually better once training is long).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import check_output_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="training run directory")
    parser.add_argument("--out", required=True, help="output folder (pipeline or component folder)")
    parser.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.convert_output import write_pipeline
    from nextscale.training.export import check_export_out, export_run, read_run_config, run_kind

    out = Path(args.out)
    check_output_dir(out, "--out")
    check_export_out(args.run, out)
    if run_kind(args.run) == "transformer":
        write_pipeline(out, lambda staging: export_run(args.run, staging, raw=args.raw))
    else:
        export_run(args.run, out, raw=args.raw)
    kept_ema = read_run_config(args.run).get("train", {}).get("ema_decay") is not None
    which = "raw" if args.raw else "EMA" if kept_ema else "raw (the run keeps no EMA: --ema-decay none)"
    print(f"exported {which} weights of {args.run} to {out}")
    return 0
