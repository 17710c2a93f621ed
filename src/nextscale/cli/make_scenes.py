"""Build a Fashion-MNIST scenes folder: 64x64 canvases of 1-4 clothes with captions saying where each item is.

Examples:
    # training scenes (items from the train split, held-out pairings never appear): about a minute on one CPU
    nextscale make-scenes --data /usr/share/datasets/fashion-mnist --split train --count 60000 --seed 0 \\
        --out scenes-train/

    # held-out scenes (items from the test split; half are built around a held-out pairing, flagged "unseen")
    nextscale make-scenes --split test --count 10000 --seed 0 --out scenes-test/

    # 20% of captions paraphrased ("a bag at the bottom right, a coat at the top left and ...")
    nextscale make-scenes --split train --count 60000 --canonical-probability 0.8 --out scenes-train-para/

Writes images/00000.png ..., captions.jsonl ({"image", "caption"} per line, readable as a caption manifest)
and scenes.json (settings, rules, and per scene its layout, source images and seen/unseen flag). Scene i
depends only on the seed, split, settings and the data (not on --count), so re-running the same command resumes an
interrupted build, and the same command with a larger --count grows a finished one (its scenes stay as they are).
A folder built with other settings is refused, naming each differing flag with its value and the folder's. The
rules (quadrants, caption form, held-out pairings) are in the docstring of nextscale.data.scenes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import check_output_dir
from nextscale.training.data_specs import FASHION_PREFIX


def _weights(text: str) -> tuple[float, ...]:
    """argparse type: "1,1,1,1" -> (1.0, 1.0, 1.0, 1.0)."""
    try:
        weights = tuple(float(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated numbers like 1,1,1,1, got {text!r}") from err
    if len(weights) != 4:
        raise argparse.ArgumentTypeError(f"expected 4 weights (for 1, 2, 3 and 4 items), got {text!r}")
    return weights


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=None,
        help="folder with the Fashion-MNIST IDX files, as DIR or fashion-mnist:DIR like the other commands' --data "
        "(default: $NEXTSCALE_FASHION_MNIST or /usr/share/datasets/fashion-mnist; Debian: apt-get install "
        "dataset-fashion-mnist)",
    )
    parser.add_argument(
        "--split",
        choices=("train", "test"),
        default="train",
        help="train: training scenes from the train images; test: held-out scenes from the test images",
    )
    parser.add_argument("--count", type=int, required=True, help="number of scenes to write")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder (created; must be empty or a scene build)")
    parser.add_argument(
        "--item-count-weights",
        type=_weights,
        default=(1.0, 1.0, 1.0, 1.0),
        help="relative weights of 1,2,3,4 items per scene (default 1,1,1,1: uniform)",
    )
    parser.add_argument(
        "--canonical-probability",
        type=float,
        default=1.0,
        help="chance a caption is the canonical one rather than a paraphrase (default 1.0)",
    )
    parser.add_argument(
        "--unseen-fraction",
        type=float,
        default=0.5,
        help="share of --split test scenes built around a held-out pairing (default 0.5; train: unused)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def fashion_mnist_folder(data: str | None) -> str | None:
    """The folder of ``--data``: ``DIR``, or ``fashion-mnist:DIR`` / ``fashion-mnist`` as the training commands take
    it (the form the missing-data message names); None, or a bare ``fashion-mnist`` that is no folder here, is the
    default folder."""
    if data is None or (data == FASHION_PREFIX and not Path(data).is_dir()):
        return None
    return data.removeprefix(FASHION_PREFIX + ":")


def run(args: argparse.Namespace) -> int:
    from nextscale.data.scenes import SceneConfig, build_scenes, read_scene_index

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    check_output_dir(Path(args.out), "--out")
    config = SceneConfig(
        item_count_weights=args.item_count_weights,
        canonical_probability=args.canonical_probability,
        unseen_fraction=args.unseen_fraction,
    )
    data = fashion_mnist_folder(args.data)
    out = build_scenes(data, args.out, args.split, args.count, args.seed, config=config, progress=not args.no_progress)
    unseen = sum(record["unseen"] for record in read_scene_index(out)["scenes"])
    print(f"wrote {args.count} {args.split} scenes ({unseen} with an unseen pairing) to {out}")
    return 0
