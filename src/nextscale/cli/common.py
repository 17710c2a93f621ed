"""Helpers shared by the command modules: the default model folder, class and sampling flags, output checks."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# The package's own copies (``bundled:fashion-mnist`` / ``bundled:scenes``, see nextscale.pretrained.BUNDLED_MODELS).
BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "demo"
BUNDLED_TEXT_MODEL = BUNDLED_MODEL.parent / "scenes"


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="pipeline folder (pipeline.json + tokenizer/ + transformer/), a `nextscale train` run directory (the "
        "EMA weights of its newest checkpoint) or a bundled model: bundled:fashion-mnist, bundled:scenes; default: "
        "bundled:fashion-mnist (with --prompt: bundled:scenes, the text-to-image model)",
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
    parser.add_argument(
        "--fused-kernels",
        action="store_true",
        help="run the transformer blocks' norms, modulations, residuals and q/k normalisation as fused compiled "
        "kernels (compiled at the first call; pays most with --cuda-graphs on a GPU; not bit-exact in fp32)",
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


# The probe file _check_writable_folder writes and removes (another process may see it for a moment).
WRITE_PROBE_PREFIX = ".nextscale-write-check."


def check_output_dir(folder: Path, flag: str) -> None:
    """``folder`` can take a command's output: a writable folder, or a path where one can be created.

    Checked before any work and without creating anything, so that a refused command leaves nothing behind.
    Raises one-line errors that name the flag, the path and the fix.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{flag} {folder} is a file, not a folder; give a folder (new or existing) instead")
    _check_writable_folder(folder, flag, folder)


def check_output_file(path: Path, flag: str, example: str = "out.png") -> None:
    """An output file's folder must exist or be creatable, and be writable; the path must not be a folder.

    An existing file at ``path`` is fine (it is replaced in one rename when the command writes it).
    ``example`` is the file name suggested when ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give a file name, e.g. {path / example}")
    _check_writable_folder(path.parent, flag, path)


def _check_writable_folder(folder: Path, flag: str, given: Path) -> None:
    """``folder`` (where ``flag``'s path ``given`` goes) exists and takes a new file, or its nearest existing
    ancestor is a folder that does.

    Writing a probe file is the only reliable test: ``os.access`` says yes to root on an immutable folder or
    a read-only file system such as /sys.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = (
            f"{folder} is a file, not a folder"
            if existing == folder
            else f"cannot create the folder {folder} ({existing} is a file)"
        )
        raise NotADirectoryError(f"{flag} {given}: {problem}; choose another path")
    try:
        handle, probe = tempfile.mkstemp(prefix=WRITE_PROBE_PREFIX, dir=existing)
    except OSError as err:
        reason = err.strerror or str(err)
        problem = (
            f"cannot write in the folder {folder} ({reason})"
            if existing == folder
            else f"cannot create the folder {folder} in {existing} ({reason})"
        )
        raise PermissionError(f"{flag} {given}: {problem}; choose a folder you can write to") from err
    os.close(handle)
    os.remove(probe)


# Image files the CLI writes, by extension, as Pillow format names.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_image_output(path: Path, flag: str) -> None:
    """:func:`check_output_file` for an image: its extension must name a format :func:`save_image` writes."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_FORMATS and not path.is_dir():
        kind = f"ends in {path.suffix!r}, a format not written here" if path.suffix else "has no image extension"
        raise ValueError(
            f"{flag} {path} {kind}; end the name with .png, .jpg, .jpeg or .webp (e.g. {path.with_suffix('.png')})"
        )
    check_output_file(path, flag)


def save_image(picture, path: Path) -> None:
    """Write a PIL image atomically in the format its extension names (PNG, JPEG or WebP; see IMAGE_FORMATS)."""
    from nextscale.pretrained import atomic_write

    path = Path(path)
    image_format = IMAGE_FORMATS[path.suffix.lower()]
    options = {} if image_format == "PNG" else {"quality": 95}  # Pillow's default lossy quality (75) blurs labels
    atomic_write(path, lambda tmp: picture.save(tmp, format=image_format, **options))


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


def seed(text: str) -> int:
    """--seed: an integer torch's generators can take, refused while parsing (before any model loads)."""
    from nextscale.sampling.pipeline import SEED_RANGE

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not SEED_RANGE[0] <= value < SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be an integer in [-2**63, 2**64), got {text}")
    return value


def add_sampling_arguments(
    parser: argparse.ArgumentParser, cfg: float = 1.5, cfg_sweep: bool = False, unseeded: str = "random"
) -> None:
    """The sampling flags; with ``cfg_sweep`` ``--cfg`` takes one or more values (``args.cfg`` is then a list).
    ``unseeded`` says in ``--seed``'s help what the command does without one ("random", or "0" where it is fixed).

    Flags left out take the model's recommended settings (``recommended_sampling`` in its pipeline.json), else
    the defaults shown; call :func:`resolve_sampling` once the pipeline is loaded.
    """
    group = parser.add_argument_group("sampling (defaults: the model's recommended settings, else as shown)")
    group.add_argument(
        "--seed", type=seed, default=None, help=f"random seed; same seed, same images (default: {unseeded})"
    )
    group.add_argument(
        "--cfg",
        type=float,
        nargs="+" if cfg_sweep else None,
        default=Default([cfg] if cfg_sweep else cfg),
        help=f"classifier-free guidance; ramps linearly from 0 at the first step (scale; token for the raster "
        f"baseline) to this value at the last (official; see --cfg-schedule); 0 turns it off (default: {cfg})"
        + ("; several values sweep it (one result row per value, the same seeds)" if cfg_sweep else ""),
    )
    group.add_argument(
        "--cfg-schedule",
        choices=("linear", "constant"),  # sampling.guidance.CFG_SCHEDULES (not imported: the CLI starts without torch)
        default="linear",
        help="how the guidance weight grows over the steps: linear (official VAR/STAR: 0 at the first step, --cfg at "
        "the last) or constant (--cfg at every step, as raster AR models usually guide; over a raster model's "
        "tokens the linear ramp averages only half of --cfg) (default: linear)",
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
        help="official 'more smooth' mode: Gumbel-softmax mixture of codes (nicer pictures); text models mix "
        "the unfiltered logits, as STAR does (--top-k and --top-p unused)",
    )
    group.add_argument(
        "--masked-sampling",
        action=argparse.BooleanOptionalAction,
        default=Default(False),
        help="STAR's masked sampling of the finest scales (official w_mask: tokens decided in 8-15 steps, from "
        "the main model and then the masked-sampler head); only models with that head (the official "
        "star-1024-sampler checkpoint), which recommend it on (default: the model's recommendation, else off)",
    )
    group.add_argument(
        "--masked-plan",
        choices=("1024", "head-only"),  # sampling.guidance.MASKED_PLANS (not imported: the CLI starts without torch)
        default="1024",
        help="with --masked-sampling: '1024' (official: a scale's 8 steps, the first 5 drawn from the model itself "
        "in a random order and the rest decided by the head; from scale index 13 on, 15 steps, all from the "
        "head) or 'head-only' (8 steps, all from the head) (default: 1024)",
    )


SAMPLING_FLAGS = {
    "top_k": "--top-k",
    "top_p": "--top-p",
    "temperature": "--temperature",
    "cfg": "--cfg",
    "masked_sampling": "--masked-sampling",
}


def check_sampling_flags(args: argparse.Namespace) -> None:
    """Refuse bad sampling flags before any model loads: the sampler's own rules (``check_sampling_args``), its
    message naming the flag as typed (values taken from a model's recommended settings are checked later)."""
    from nextscale.sampling.logits import check_sampling_args

    def given(name: str, neutral):
        value = getattr(args, name, None)
        return neutral if value is None or isinstance(value, Default) else value

    cfg = given("cfg", 0.0)
    for value in cfg if isinstance(cfg, list) else [cfg]:
        try:
            check_sampling_args(given("top_k", None), given("top_p", None), given("temperature", 1.0), value)
        except ValueError as err:
            name, _, rest = str(err).partition(" ")
            rest = rest.replace(", or None to turn it off", " (or none to turn it off)").replace("; got ", ", got ")
            raise ValueError(f"{SAMPLING_FLAGS[name]} {rest}") from None


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
        masked_sampling=args.masked_sampling,
        masked_plan=args.masked_plan,
        cfg_schedule=args.cfg_schedule,
        seed=args.seed,
    )


def check_device(name: str):
    """``--device`` as a torch.device, or a one-line error for a malformed or unavailable one."""
    from nextscale.pretrained import usable_device

    return usable_device(name, "--device")


def is_transformer_run(path) -> bool:
    """Whether ``path`` is a `nextscale train` run directory (its config.json says ``"kind": "transformer"``)."""
    from nextscale.training.export import run_kind

    return not (Path(path) / "pipeline.json").is_file() and run_kind(path) == "transformer"


def open_pipeline(path, device: str, dtype: str, cuda_graphs: bool, fused_kernels: bool):
    """A pipeline folder (or ``bundled:NAME``), or the newest checkpoint of a `nextscale train` run, with the
    sampling paths asked for."""
    from nextscale.sampling.pipeline import Pipeline

    if not is_transformer_run(path):
        return Pipeline.from_pretrained(
            path, device=device, dtype=dtype, cuda_graphs=cuda_graphs, fused_kernels=fused_kernels
        )
    from nextscale.training.export import load_run_pipeline

    pipe = load_run_pipeline(path, device=device).use_precision(dtype)
    pipe = pipe.use_cuda_graphs() if cuda_graphs else pipe
    print(
        f"using the newest checkpoint of run {path} (its EMA weights when the run keeps them; `nextscale "
        "export` makes a pipeline folder)",
        file=sys.stderr,
    )
    return pipe.use_fused_kernels(fused_kernels)


def load_pipeline(args: argparse.Namespace):
    check_device(args.device)
    check_sampling_flags(args)

    text = getattr(args, "prompt", None) is not None or getattr(args, "text_features", None) is not None
    default = BUNDLED_TEXT_MODEL if text else BUNDLED_MODEL
    if args.model is None and not (default / "pipeline.json").is_file():
        raise FileNotFoundError(f"the bundled model is missing at {default}; pass --model DIR")
    path = args.model if args.model is not None else ("bundled:scenes" if text else "bundled:fashion-mnist")
    dtype, cuda_graphs = getattr(args, "dtype", "fp32"), getattr(args, "cuda_graphs", False)
    pipe = open_pipeline(path, args.device, dtype, cuda_graphs, getattr(args, "fused_kernels", False))
    if pipe.precision.name != "fp32" or getattr(args, "dtype", "fp32") != "fp32":
        print(f"sampling in {pipe.precision.name} ({pipe.precision.reason})", flush=True)
    if hasattr(args, "cfg"):
        resolve_sampling(args, pipe)
    return pipe


def load_text_encoder_option(value: str, pooling: str | None = None, max_length: int | None = None):
    """--text-encoder of `train`, `convert` and `scaling`: 'default' (the bundled MiniLM) or a local folder, with
    `convert`'s --text-pooling and --text-max-length where given."""
    from nextscale.text import load_default_text_encoder, load_text_encoder

    if value == "default":
        if pooling is not None or max_length is not None:
            raise ValueError("--text-pooling and --text-max-length are for --text-encoder DIR; 'default' is fixed")
        return load_default_text_encoder()
    return load_text_encoder(value, pooling=pooling, max_length=max_length)
