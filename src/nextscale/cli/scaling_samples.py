"""`nextscale scaling samples`: the same classes and seeds drawn by every model of a sweep (the VAR paper's Fig. 7).

One row per depth, smallest model first, or with --every-checkpoint one row per kept checkpoint of each (oldest
first: quality against training compute); one column per class (or prompt, for a text sweep) and image. A sweep
with several seeds gives each depth one row, drawn by the run of its base seed (OUT/runs/d{depth}), else by the
run of its lowest seed; the other seeds' runs are not drawn. Every row samples with the same seed and settings, so
the rows differ only in the model that drew them. A black first tile names the row's run, its parameter count and
the checkpoint's step; the images are labelled with their class.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from nextscale.cli.common import (
    add_classes_argument,
    add_sampling_arguments,
    check_device,
    check_image_output,
    check_sampling_flags,
    resolve_sampling,
    sampling_kwargs,
    save_image,
)
from nextscale.training.options import positive_int

# Tiles narrower than this are enlarged (nearest neighbour) so that the labels under them stay readable.
READABLE_TILE = 96

EXAMPLES = """Examples:
    nextscale scaling samples --sweep sweeps/fm --class 0 5 7 9 --seed 0          # SWEEP/samples.png
    nextscale scaling samples --sweep sweeps/fm --every-checkpoint --out fig7.png  # rows: size x training
    nextscale scaling samples --sweep sweeps/text --prompt "a bag in the top left" --num 2
"""


def add_samples_parser(sub) -> None:
    samples = sub.add_parser(
        "samples",
        help="the same classes and seeds from every model of a sweep, one row per depth (the paper's Fig. 7; "
        "the base seed's run of each depth)",
        description=__doc__.split("\n\n", 1)[1] + "\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    samples.add_argument("--sweep", type=Path, required=True, help="a sweep folder of `nextscale scaling run`")
    samples.add_argument("--out", type=Path, default=None, help="PNG to write (default: SWEEP/samples.png)")
    add_classes_argument(samples, help="classes of the columns, by id or name (default: every class, up to 10)")
    samples.add_argument("--prompt", nargs="+", default=None, help="prompts of the columns (a text sweep)")
    samples.add_argument("--num", type=positive_int, default=1, help="images per class or prompt (default 1)")
    samples.add_argument(
        "--every-checkpoint",
        action="store_true",
        help="one row per kept checkpoint of each run, not only its newest (train with --keep-checkpoints 0 "
        "to keep them all)",
    )
    samples.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA weights")
    samples.add_argument(
        "--zoom",
        type=positive_int,
        default=None,
        help=f"enlarge tiles this many times (default: to >= {READABLE_TILE} px)",
    )
    samples.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    add_sampling_arguments(samples)


def sweep_rows(sweep: Path, every_checkpoint: bool) -> list[tuple[str, Path, Path]]:
    """(label, run folder, checkpoint) per row: one run per depth (``one_run_per_depth``), smallest first, each
    with its newest (or every) checkpoint."""
    from nextscale.scaling.sweep import RUNS_DIR, collect_sweep, one_run_per_depth
    from nextscale.training.checkpoint import checkpoint_step, list_checkpoints

    rows = []
    for run in one_run_per_depth(collect_sweep(sweep)):
        run_dir = sweep / RUNS_DIR / run.run
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            print(f"{run.run}: no checkpoint yet, left out", file=sys.stderr)
            continue
        for path in checkpoints if every_checkpoint else checkpoints[-1:]:
            rows.append((f"{run.run} {format_count(run.params)} s{checkpoint_step(path)}", run_dir, path))
    if not rows:
        raise ValueError(f"no run of {sweep} has a checkpoint yet; train it with `nextscale scaling run`")
    return rows


def format_count(params: int) -> str:
    """1234567 -> '1.2M', 45600 -> '45.6k'."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if params >= size:
            return f"{params / size:.1f}{suffix}"
    return str(params)


def column_inputs(args: argparse.Namespace, pipe) -> tuple[dict, list[str]]:
    """The sampling inputs of one row and the column names, from --class / --prompt and the first model."""
    if pipe.is_text_conditional:
        if args.classes is not None or not args.prompt:
            raise ValueError(f"{args.sweep} is a text-to-image sweep: name the columns with --prompt, not --class")
        prompts = [prompt for prompt in args.prompt for _ in range(args.num)]
        return {"prompt": prompts}, [prompt if len(prompt) <= 24 else prompt[:23] + "…" for prompt in prompts]
    if args.prompt is not None:
        raise ValueError(f"{args.sweep} is a class-conditional sweep: name the columns with --class, not --prompt")
    labels = pipe.class_ids(args.classes) if args.classes is not None else list(range(min(pipe.num_classes, 10)))
    labels = [label for label in labels for _ in range(args.num)]
    names = pipe.class_names or [str(label) for label in range(pipe.num_classes)]
    return {"class_labels": labels}, [names[label] for label in labels]


def run_samples(args: argparse.Namespace) -> int:
    import torch

    from nextscale.cli.demo import enlarge
    from nextscale.data.grids import make_grid
    from nextscale.training.export import load_run_pipeline

    check_device(args.device)
    check_sampling_flags(args)
    out = args.out if args.out is not None else args.sweep / "samples.png"
    check_image_output(out, "--out")
    rows = sweep_rows(args.sweep, args.every_checkpoint)
    if args.seed is None:
        args.seed = secrets.randbelow(2**31)
    inputs, names, sampling, images, labels = None, [], {}, [], []
    for row_label, run_dir, checkpoint in rows:
        pipe = load_run_pipeline(run_dir, raw=args.raw, checkpoint=checkpoint, device=args.device)
        if inputs is None:
            inputs, names = column_inputs(args, pipe)
            sampling = sampling_kwargs(resolve_sampling(args, pipe))
        with torch.inference_mode():
            row = pipe(**inputs, **sampling, output_type="pt").images.float().cpu() * 2 - 1
        images += [-torch.ones_like(row[:1]), row]  # a black first tile carries the row's label
        labels += [row_label] + names
        print(f"{row_label}: {len(names)} images", flush=True)
    tiles = torch.cat(images)
    zoom = args.zoom if args.zoom is not None else max(1, -(-READABLE_TILE // tiles.shape[-1]))
    save_image(make_grid(enlarge(tiles, zoom), nrow=len(names) + 1, labels=labels), out)
    print(f"wrote {out}: {len(rows)} rows x {len(names)} images, seed {args.seed}, cfg {sampling['cfg']}")
    return 0
