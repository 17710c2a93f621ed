"""Draw a training run's curves (from its metrics.jsonl) into one PNG.

Examples:
    nextscale plot --run runs/fm-var                       # writes runs/fm-var/curves.png
    nextscale plot --run runs/fm-tokenizer --out tok.png   # loss, PSNR per scale, code usage per scale

Panels: training loss, held-out loss, per-scale held-out loss and token error (transformer runs);
reconstruction loss, held-out PSNR per scale and code usage per scale (tokenizer runs). Works while a
run is still training; needs matplotlib (the eval extra). Takes about a second.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="training run directory (holds metrics.jsonl)")
    parser.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN/curves.png)")
    parser.add_argument("--title", default=None, help="figure title (default: the run directory)")


def run(args: argparse.Namespace) -> int:
    from nextscale.training.curves import plot_run

    try:
        path = plot_run(args.run, args.out or args.run / "curves.png", title=args.title)
    except ImportError as err:
        raise ValueError(str(err)) from err
    print(f"curves: {path}")
    return 0
