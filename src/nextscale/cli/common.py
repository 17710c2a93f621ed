"""Helpers shared by the command modules: the default model folder, class and sampling flags, output checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# The package's own copies (``bundled:fashion-mnist`` / ``bundled:scenes``, see nextscale.pretrained.BUNDLED_MODELS).
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo"
BUNDLED_TEXT_MODEL = BUNDLED_MODEL.parent / "scenes"


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="pipeline folder (pipeline.json + tokenizer/ + transformer/) or a bundled model: bundled:fashion-mnist, "
        "bundled:scenes; default: bundled:fashion-mnist (with --prompt: bundled:scenes, the text-to-image model)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    add_dtype_argument(parser)


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        default="fp32",
        choices=("fp32", "auto", "bf16", "fp16", "int8"),
        help="sampling precision: fp32 (exact, the default), or faster: bf16 (GPUs, CPUs with native bf16), fp16 "
        "(GPUs without bf16), int8 (CPUs), auto (the fastest this device supports; says which)",
    )
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay each scale's transformer step as a CUDA graph (GPUs; the first batch of each size captures, "
        "later ones replay; same tokens as without in fp32)",
    )


def class_spec(text: str) -> int | str:
    """argparse type of ``--class``: an id (``3``) or a class name (``sneaker``, ``"ankle boot"``)."""
    stripped = text.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


def add_classes_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--class ID|NAME [ID|NAME ...]`` into ``args.classes`` (None when absent); resolve with ``pipe.class_ids``."""
    parser.add_argument(
        "--class", dest="classes", type=class_spec, nargs="+", default=None, metavar="ID|NAME", help=help
    )


def check_output_dir(folder: Path, flag: str) -> None:
    """Create ``folder`` now (so a bad path fails before any sampling) and check that it is writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{flag}: cannot create the folder {folder} ({err.strerror or err})") from err
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{flag}: the folder {folder} is not writable")


def check_output_file(path: Path, flag: str) -> None:
    """An output file's folder must be creatable and writable, and the path must not be a folder."""
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'out.png'}")
    check_output_dir(path.parent, flag)


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


def check_device(name: str):
    """``--device`` as a torch.device, or a one-line error for a malformed or unavailable one."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return device


def load_pipeline(args: argparse.Namespace):
    from nextscale.sampling.pipeline import Pipeline

    check_device(args.device)

    text = getattr(args, "prompt", None) is not None or getattr(args, "text_features", None) is not None
    default = BUNDLED_TEXT_MODEL if text else BUNDLED_MODEL
    if args.model is None and not (default / "pipeline.json").is_file():
        raise FileNotFoundError(f"the bundled model is missing at {default}; pass --model DIR")
    path = args.model if args.model is not None else ("bundled:scenes" if text else "bundled:fashion-mnist")
    pipe = Pipeline.from_pretrained(
        path,
        device=args.device,
        dtype=getattr(args, "dtype", "fp32"),
        cuda_graphs=getattr(args, "cuda_graphs", False),
    )
    if pipe.precision.name != "fp32" or getattr(args, "dtype", "fp32") != "fp32":
        print(f"sampling in {pipe.precision.name} ({pipe.precision.reason})", flush=True)
    if hasattr(args, "cfg"):
        resolve_sampling(args, pipe)
    return pipe
