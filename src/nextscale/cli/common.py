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


class Default:
    """A flag's value when it was not given on the command line, so a model's recommended setting may replace it."""

    def __init__(self, value) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


def optional_number(kind: type):
    """argparse type: a number, or 'none' (the filter is off)."""

    def parse(text: str):
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


SAMPLING_FLAGS = ("cfg", "top_k", "top_p", "temperature")


def add_sampling_arguments(parser: argparse.ArgumentParser, cfg: float = 1.5, cfg_sweep: bool = False) -> None:
    """The sampling flags; with ``cfg_sweep`` ``--cfg`` takes one or more values (``args.cfg`` is then a list).

    Flags left out take the model's recommended settings (``recommended_sampling`` in its pipeline.json), else
    the defaults shown; call :func:`resolve_sampling` once the pipeline is loaded.
    """
    group = parser.add_argument_group("sampling (defaults: the model's recommended settings, else as shown)")
    group.add_argument("--seed", type=int, default=None, help="random seed; same seed, same images (default: random)")
    group.add_argument(
        "--cfg",
        type=float,
        nargs="+" if cfg_sweep else None,
        default=Default([cfg] if cfg_sweep else cfg),
        help=f"classifier-free guidance; ramps linearly from 0 at the first scale to this value at "
        f"the last (official); 0 turns it off (default: {cfg})"
        + ("; several values sweep it (text models: one result row per value)" if cfg_sweep else ""),
    )
    group.add_argument(
        "--top-k",
        type=optional_number(int),
        default=Default(None),
        help="keep the k most likely tokens (official FID: 900); 'none' = off (default: off)",
    )
    group.add_argument(
        "--top-p",
        type=optional_number(float),
        default=Default(None),
        help="nucleus mass in (0, 1] (official FID: 0.96); 'none' = off (default: off)",
    )
    group.add_argument("--temperature", type=float, default=Default(1.0), help="divide logits by this (default: 1.0)")
    group.add_argument(
        "--smooth",
        action="store_true",
        help="official 'more smooth' mode: Gumbel-softmax mixture of codes (nicer pictures)",
    )


def resolve_sampling(args: argparse.Namespace, pipe) -> argparse.Namespace:
    """Replace every sampling flag left out by the pipeline's recommended value (or the command's default)."""
    recommended = getattr(pipe, "recommended_sampling", {}) or {}
    for name in SAMPLING_FLAGS:
        value = getattr(args, name)
        if isinstance(value, Default):
            chosen = recommended.get(name, value.value)
            if name == "cfg" and isinstance(value.value, list) and not isinstance(chosen, list):
                chosen = [chosen]
            setattr(args, name, chosen)
    return args


def sampling_kwargs(args: argparse.Namespace) -> dict:
    for name in SAMPLING_FLAGS:
        if isinstance(getattr(args, name), Default):
            raise RuntimeError("resolve_sampling(args, pipe) must run before sampling_kwargs(args)")
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
    pipe = Pipeline.from_pretrained(path, device=args.device)
    if hasattr(args, "cfg"):
        resolve_sampling(args, pipe)
    return pipe
