"""Command-line flags shared by the training commands, parsed into ``TrainConfig`` and datasets.

Every flag is kebab-case with a help string. ``--config FILE.json`` reads a run file from ``configs/``:
its ``"args"`` (flag names without the dashes) replace the defaults, and flags given on the command line
with a non-default value win over the file.

Data specs: ``fashion-mnist`` (the system copy), ``fashion-mnist:DIR`` (IDX files in DIR), an image
folder: ``DIR/train`` + ``DIR/val`` when both exist (ImageNet layout), else ``DIR`` itself with no
held-out set; or captioned images ``captions:PATH`` (a folder of images with same-name .txt captions, a
folder with captions.jsonl/.csv, a .jsonl/.csv manifest, or .tar shards; see ``nextscale.data.captions``),
which yields (image, caption) pairs for text models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nextscale.training.config import PRECISIONS, TrainConfig

FASHION_PREFIX = "fashion-mnist"
CAPTIONS_PREFIX = "captions:"


def optional_float(text: str) -> float | None:
    """argparse type: a float, or "none" for off."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from err


def optional_int(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from err


def int_tuple(text: str) -> tuple[int, ...]:
    """argparse type: "1,2,4" -> (1, 2, 4)."""
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4, got {text!r}") from err


def add_run_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """--config, --run-dir, the data spec, and every TrainConfig field as a flag (defaults from ``defaults``)."""
    d = defaults
    parser.add_argument("--config", help="JSON run file from configs/ whose 'args' set the defaults of these flags")
    parser.add_argument("--run-dir", help="run directory (created; re-running the same command resumes from it)")
    group = parser.add_argument_group("optimisation")
    group.add_argument("--steps", type=int, default=None, help="optimizer steps of the whole run (overrides --epochs)")
    group.add_argument("--epochs", type=float, default=None, help="length of the run in passes over the data")
    group.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch (all GPUs, all micro-steps)")
    group.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    group.add_argument("--base-lr", type=float, default=d.base_lr, help="lr per 256 samples; peak = base * batch / 256")
    group.add_argument("--lr", type=optional_float, default=d.lr, help="explicit peak lr (overrides --base-lr)")
    group.add_argument("--lr-schedule", choices=("lin0", "cos", "constant"), default=d.lr_schedule, help="lr shape")
    group.add_argument("--warmup", type=float, default=d.warmup, help="warm-up steps (>= 1) or fraction (< 1)")
    group.add_argument("--end-lr-factor", type=float, default=d.end_lr_factor, help="lr factor at the end (VAR wpe)")
    group.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay (tensor rule)")
    group.add_argument(
        "--weight-decay-end",
        type=optional_float,
        default=d.weight_decay_end,
        help="final weight decay of a cosine ramp ('none': constant)",
    )
    group.add_argument("--betas", type=float, nargs=2, default=list(d.betas), help="AdamW betas")
    group.add_argument("--grad-clip", type=optional_float, default=d.grad_clip, help="max grad norm ('none': off)")
    group.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="autocast precision")
    group.add_argument("--ema-decay", type=optional_float, default=d.ema_decay, help="EMA decay ('none': off)")
    group.add_argument("--seed", type=int, default=d.seed, help="seed of init, data order and dropout")
    group = parser.add_argument_group("bookkeeping")
    group.add_argument("--log-every", type=int, default=d.log_every, help="steps between metric lines")
    group.add_argument("--eval-every", type=optional_int, default=d.eval_every, help="steps between held-out evals")
    group.add_argument("--eval-samples", type=int, default=d.eval_samples, help="held-out samples per evaluation")
    group.add_argument("--preview-every", type=optional_int, default=d.preview_every, help="steps between previews")
    group.add_argument(
        "--checkpoint-every",
        type=optional_int,
        default=d.checkpoint_every,
        help="steps between checkpoints (one is always written at the end)",
    )
    group.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="newest checkpoints kept")
    group.add_argument("--max-steps", type=int, default=None, help="stop this invocation at this step (resume later)")
    group = parser.add_argument_group("hardware")
    group.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when available)")
    group.add_argument("--num-workers", type=int, default=d.num_workers, help="data-loading worker processes")
    group.add_argument("--strategy", choices=("ddp", "fsdp", "none"), default=d.strategy, help="data parallelism")
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(_parser=parser)


def apply_run_file(args: argparse.Namespace) -> argparse.Namespace:
    """Fill flags left at their default from the ``--config`` file's "args"."""
    if not getattr(args, "config", None):
        return args
    path = Path(args.config)
    if not path.is_file():
        raise FileNotFoundError(f"run file {path} not found")
    try:
        run_file = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    parser: argparse.ArgumentParser = args._parser
    for key, value in run_file.get("args", {}).items():
        dest = key.replace("-", "_")
        if not hasattr(args, dest) or dest.startswith("_"):
            raise ValueError(f"{path}: unknown flag {key!r} in 'args' (see --help for the flags of this command)")
        if getattr(args, dest) == parser.get_default(dest):
            setattr(args, dest, tuple(value) if isinstance(value, list) and dest != "betas" else value)
    return args


def train_config_from_args(args: argparse.Namespace, samples_per_epoch: int, **overrides: Any) -> TrainConfig:
    """TrainConfig from the parsed flags; the length comes from --steps, or --epochs over ``samples_per_epoch``."""
    if args.steps is not None:
        total_steps = args.steps
    elif args.epochs is not None:
        total_steps = max(1, round(args.epochs * samples_per_epoch / args.batch_size))
    else:
        raise ValueError("give the length of the run: --steps N or --epochs E")
    values = dict(
        total_steps=total_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        base_lr=args.base_lr,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        end_lr_factor=args.end_lr_factor,
        weight_decay=args.weight_decay,
        weight_decay_end=args.weight_decay_end,
        betas=tuple(args.betas),
        grad_clip=args.grad_clip,
        precision=args.precision,
        ema_decay=args.ema_decay,
        seed=args.seed,
        log_every=args.log_every,
        eval_every=args.eval_every,
        eval_samples=args.eval_samples,
        preview_every=args.preview_every,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        num_workers=args.num_workers,
        strategy=args.strategy,
        compile=args.compile,
        progress=not args.no_progress,
    )
    values.update(overrides)
    return TrainConfig(**values)


def build_datasets(spec: str, image_size: int, channels: int, seed: int = 0, split: str | None = None):
    """(train, held-out or None) datasets of (image in [-1, 1], label) for a data spec (see module docstring).

    With ``split`` ("train" or "test"/"val") only that split is returned, as the first element.
    """
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.images import ImageFolderDataset

    if spec.startswith(CAPTIONS_PREFIX):
        from nextscale.data.captions import open_caption_dataset

        # Center crops, no flips: captions name positions ("on the left"). Held-out data is a second spec.
        return open_caption_dataset(spec[len(CAPTIONS_PREFIX) :], image_size, channels=channels, seed=seed), None
    if spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        root = spec.partition(":")[2] or None
        if root is not None and not Path(root).is_dir():
            raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist (from --data {spec})")
        if split is not None:
            return FashionMNIST(root, "test" if split in ("test", "val") else "train", image_size, channels), None
        return (FashionMNIST(root, "train", image_size, channels), FashionMNIST(root, "test", image_size, channels))
    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {root} does not exist; pass --data fashion-mnist[:DIR] or a folder of "
            "class sub-folders (ImageNet layout: DIR/train and DIR/val)"
        )
    train_dir, val_dir = root / "train", root / "val"
    layout = train_dir.is_dir() and val_dir.is_dir()
    if split is not None:
        folder = (val_dir if split in ("test", "val") else train_dir) if layout else root
        return ImageFolderDataset(folder, image_size, train=False, channels=channels), None
    if layout:
        return (
            ImageFolderDataset(train_dir, image_size, train=True, channels=channels, seed=seed),
            ImageFolderDataset(val_dir, image_size, train=False, channels=channels),
        )
    return ImageFolderDataset(root, image_size, train=True, channels=channels, seed=seed), None
