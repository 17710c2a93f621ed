"""Draw a training run's curves (from its metrics.jsonl) into one PNG.

Examples:
    nextscale plot --run runs/fm-var                       # writes runs/fm-var/curves.png
    nextscale plot --run runs/fm-tokenizer --out tok.png   # loss, PSNR per scale, code usage per scale
    nextscale plot --run runs/scenes-128-finetune runs/scenes-128-scratch --labels fine-tuned scratch \\
        --out transfer.png                                 # several runs: training and held-out loss together
    nextscale plot --run runs/var-d4 runs/raster-d4 --x tokens --out var_vs_raster.png   # at equal data seen

Panels: training loss, held-out loss (of the raw weights, and of the EMA weights that export writes where the run
logged them), per-scale held-out loss and token error (transformer runs); reconstruction loss, held-out PSNR per
scale (and the EMA weights' PSNR) and code usage per scale (tokenizer runs). Works while a
run is still training, and then says so on stderr (its curves stop where the run has got to); needs matplotlib (the
eval extra). Takes about a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nextscale.cli.common import check_output_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        type=Path,
        nargs="+",
        action="extend",  # --run A --run B compares both, as --run A B does (a plain store kept only B)
        required=True,
        help="training run directory (holds metrics.jsonl); several (--run A B, or --run A --run B) compare",
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        action="extend",
        default=None,
        help="legend names of several runs, in the order of --run (default: folder names)",
    )
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN/curves.png)")
    parser.add_argument(
        "--title", default=None, help="figure title (default: the labels, or the run directory of one run)"
    )
    parser.add_argument(
        "--x",
        choices=("step", "samples", "tokens"),
        default="step",
        help="x axis: optimizer steps (default), samples seen (steps x global batch) or target tokens seen "
        "(samples x tokens per sample: every scale for VAR, the one map for the raster baseline)",
    )


def run(args: argparse.Namespace) -> int:
    from nextscale.training.curves import plot_comparison, plot_run

    repeated = sorted({str(folder) for folder in args.run if args.run.count(folder) > 1})
    if repeated:  # its curves would be drawn twice, under one name
        raise ValueError(f"--run {' '.join(repeated)} is given twice; name each run once")
    if args.labels is not None and len(args.labels) != len(args.run):
        raise ValueError(
            f"got {len(args.labels)} --labels for {len(args.run)} run{'s' * (len(args.run) > 1)}; "
            "give one per --run folder"
        )
    out = args.out or (Path("comparison.png") if len(args.run) > 1 else args.run[0] / "curves.png")
    if args.out is not None:  # before any reading or drawing; the default lies in a run folder that exists
        if args.out.suffix.lower() != ".png" and not args.out.is_dir():  # PNG bytes under a .jpg or .pdf name
            raise ValueError(
                f"--out {args.out}: the figure is a PNG; end the name with .png (e.g. {args.out.with_suffix('.png')})"
            )
    if args.out is not None or len(args.run) > 1:  # the comparison's default lies in the current folder
        check_output_file(out, "--out", example="curves.png")
    try:
        if len(args.run) > 1:
            path = plot_comparison(args.run, out, labels=args.labels, title=args.title, x=args.x)
        else:
            path = plot_run(args.run[0], out, title=args.title or (args.labels or [None])[0], x=args.x)
    except ImportError as err:
        raise ValueError(str(err)) from err
    for run_dir in args.run:
        note = live_run_note(run_dir)
        if note is not None:
            print(f"note: {note}", file=sys.stderr)
    print(f"curves: {path}")
    return 0


def live_run_note(run_dir: Path) -> str | None:
    """One line for a run that is training now (its lock is held), or None: its curves are partial."""
    from nextscale.training.curves import read_metrics
    from nextscale.training.run_lock import training_process

    pid = training_process(run_dir)
    if pid is None:
        return None
    series = read_metrics(run_dir)
    logged = max((step for metrics in series.values() for points in metrics.values() for step, _ in points), default=0)
    config = run_dir / "config.json"
    total = (json.loads(config.read_text()).get("train") or {}).get("total_steps") if config.is_file() else None
    planned = "" if total is None else f" of {total}"
    return (
        f"run {run_dir} is still training (process {pid}): its curves stop at step {logged}{planned}, where it has "
        "got to; plot again later for the rest"
    )
