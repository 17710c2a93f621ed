"""Helpers shared by the command modules: the default model folder and sampling flags."""

from __future__ import annotations

import argparse
from pathlib import Path

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo"
BUNDLED_TEXT_MODEL = BUNDLED_MODEL.parent / "scenes"


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="pipeline folder (pipeline.json + tokenizer/ + transformer/); default: the bundled "
        "Fashion-MNIST demo model (with --prompt: the bundled text-to-image scene model)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def add_classes_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--class ID [ID ...]`` into ``args.classes`` (None when absent)."""
    parser.add_argument("--class", dest="classes", type=int, nargs="+", default=None, metavar="ID", help=help)


def add_sampling_arguments(parser: argparse.ArgumentParser, cfg: float = 1.5, cfg_sweep: bool = False) -> None:
    """The sampling flags; with ``cfg_sweep`` ``--cfg`` takes one or more values (``args.cfg`` is then a list)."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--seed", type=int, default=None, help="random seed; same seed, same images (default: random)")
    group.add_argument(
        "--cfg",
        type=float,
        nargs="+" if cfg_sweep else None,
        default=[cfg] if cfg_sweep else cfg,
        help=f"classifier-free guidance; ramps linearly from 0 at the first scale to this value at "
        f"the last (official); 0 turns it off (default: {cfg})"
        + ("; several values sweep it (text models: one result row per value)" if cfg_sweep else ""),
    )
    group.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (official FID: 900)")
    group.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1] (official FID: 0.96)")
    group.add_argument("--temperature", type=float, default=1.0, help="divide logits by this (default: 1.0)")
    group.add_argument(
        "--smooth",
        action="store_true",
        help="official 'more smooth' mode: Gumbel-softmax mixture of codes (nicer pictures)",
    )


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return dict(
        cfg=args.cfg,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        smooth=args.smooth,
        seed=args.seed,
    )


def load_pipeline(args: argparse.Namespace):
    from nextscale.sampling.pipeline import Pipeline

    text = getattr(args, "prompt", None) is not None or getattr(args, "text_features", None) is not None
    path = args.model if args.model is not None else (BUNDLED_TEXT_MODEL if text else BUNDLED_MODEL)
    if args.model is None and not (path / "pipeline.json").is_file():
        raise FileNotFoundError(f"the bundled model is missing at {path}; pass --model DIR")
    return Pipeline.from_pretrained(path, device=args.device)
