"""`nextscale info` on a pipeline folder or one component folder: classes, sizes, schedule and weight formats, read
from config files and safetensors headers (no weights are loaded)."""

from __future__ import annotations

import math
import shlex
from pathlib import Path
from typing import Any

from nextscale.cli.info_format import millions


def component_facts(folder: Path) -> dict[str, Any]:
    """A component folder's class, parameter count and weight format (from the safetensors header), and shape."""
    from safetensors import SafetensorError, safe_open

    from nextscale.pretrained import read_json_file

    saved = read_json_file(folder / "config.json", f"{folder} is not a component folder")
    config = saved.get("config", {}) if isinstance(saved.get("config"), dict) else {}
    count, dtypes = 0, set()  # the weights' formats: integer buffers (a step counter) are no weights
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                piece = weights.get_slice(key)
                shape = piece.get_shape()
                count += math.prod(shape)
                if piece.get_dtype().startswith(("F", "BF")):
                    dtypes.add(piece.get_dtype())
    except SafetensorError as err:  # not an OSError or ValueError: it would end `info` in a traceback
        raise ValueError(
            f"{folder / 'model.safetensors'} could not be read ({err}); the file is corrupt or truncated"
        ) from err
    facts = {
        "class": saved.get("class", "?"),
        "parameters": millions(count),
        "weights": "/".join(sorted(dtypes)),
    }
    shape = ("depth", "embed_dim", "num_heads", "num_classes", "vocab_size", "code_dim", "text_dim", "scale_sides")
    shape += ("sampler_head", "sampler_from_scale")
    return facts | {key: config[key] for key in shape if key in config}


def describe_pipeline(folder: Path, shown: str | None = None) -> dict[str, Any]:
    """A pipeline folder from its files; ``shown``: the ``bundled:NAME`` it was named by, which the headline and the
    suggested command use (the folder's place inside the installed package is no name to type)."""
    from nextscale.pretrained import read_json_file
    from nextscale.sampling.pipeline_folder import check_index
    from nextscale.tokenizer.config import TokenizerConfig

    spec = read_json_file(folder / "pipeline.json", f"{folder} is not a pipeline folder")
    check_index(spec, folder / "pipeline.json")  # what loading refuses: e.g. a component named by a number
    kind = spec.get("_class_name", "?")
    name = shown or str(folder)
    bundled = f" ({shown}, shipped inside the nextscale package)" if shown else ""
    report: dict[str, Any] = {"what": f"{folder}: a {kind} folder{bundled}"}
    transformer = component_facts(folder / spec.get("transformer", "transformer"))
    tokenizer = component_facts(folder / spec.get("tokenizer", "tokenizer"))
    tokenizer_config = read_json_file(folder / spec.get("tokenizer", "tokenizer") / "config.json", "").get("config", {})
    factor = 2 ** (len(tokenizer_config.get("channel_multipliers", TokenizerConfig.channel_multipliers)) - 1)
    sides = transformer.get("scale_sides") or tokenizer.get("scale_sides") or []
    if sides:
        side = sides[-1] * factor
        channels = tokenizer_config.get("in_channels", 3)
        report["images"] = f"{side}x{side} px, " + {1: "grayscale", 3: "RGB"}.get(channels, f"{channels} channels")
        report["scales"] = f"{len(sides)} ({', '.join(map(str, sides))}), {sum(s * s for s in sides)} tokens"
        if kind == "RasterPipeline":
            report["scales"] = (
                f"none: the raster-scan baseline, one {sides[-1]}x{sides[-1]} map whose {sides[-1] ** 2} tokens are "
                "drawn one at a time (no editing)"
            )
    report["transformer"] = _component_line(transformer)
    report["tokenizer"] = _component_line(tokenizer)
    if trained := _exported_from(folder / spec.get("transformer", "transformer")):
        report["trained_weights"] = trained
    names = spec.get("class_names")
    if names:
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        report["classes"] = shown
    elif "num_classes" in transformer:
        report["classes"] = f"{transformer['num_classes']} (by id; no names recorded)"
    if spec.get("text_encoder"):
        report["text_encoder"] = _text_encoder_line(folder / spec["text_encoder"])
    if spec.get("recommended_sampling"):
        report["recommended_sampling"] = spec["recommended_sampling"]
    report["try"] = (
        f"nextscale sample --model {name} --prompt {shlex.quote(_example_prompt(folder))} --out grid.png"
        if spec.get("text_encoder") or "text_dim" in transformer
        else f"nextscale sample --model {name} --class all --out grid.png"
    )
    return report


def _example_prompt(folder: Path) -> str:
    """A prompt the model knows: the caption of the folder's first example image (``examples/NAME.txt``, as
    bundled:scenes ships), else a generic one."""
    captions = sorted((folder / "examples").glob("*.txt"))
    caption = captions[0].read_text(encoding="utf-8", errors="replace").strip() if captions else ""
    return caption.splitlines()[0] if caption else "a photo"


def _component_line(facts: dict[str, Any]) -> str:
    shape = ", ".join(
        f"{key.replace('_', ' ')} {facts[key]}"
        for key in ("depth", "embed_dim", "num_heads", "vocab_size", "code_dim")
        if key in facts
    )
    head = (
        f"; masked-sampler head from scale {facts.get('sampler_from_scale')} (sample with --masked-sampling)"
        if facts.get("sampler_head")
        else ""
    )
    return (
        f"{facts['class']}, {facts['parameters']} parameters ({facts['weights']})"
        + (f"; {shape}" if shape else "")
        + head
    )


def _exported_from(component: Path) -> str | None:
    """ "EMA weights of step 2 (checkpoints/step-00000002.pt)" from an exported component's export.json; None for a
    folder without one (saved by save_pretrained, converted, or exported before the record existed)."""
    from nextscale.training.export import read_export_record

    record = read_export_record(component)
    if record is None:
        return None
    weights = "EMA weights" if record.weights == "ema" else "raw (non-EMA) weights"
    return f"{weights} of training step {record.step} ({record.checkpoint} of the run it was exported from)"


def _text_encoder_line(folder: Path) -> str:
    """What a pipeline's text_encoder/ folder points at, read from its reference file (the encoder is not loaded)."""
    from nextscale.pretrained import read_json_file
    from nextscale.text.loading import package_model_path
    from nextscale.text.reference import REFERENCE_NAME

    if not (folder / REFERENCE_NAME).is_file():
        return f"a copy in {folder}" if (folder / "config.json").is_file() else f"missing: {folder} is empty"
    reference = read_json_file(folder / REFERENCE_NAME, "")
    width = f"width {reference.get('width')}, {reference.get('kind')} encoder"
    if "package" in reference:
        where = f"the PyPI package {reference['package']}" + _found_note(package_model_path, reference["package"])
    else:
        path = Path(reference.get("path", ""))
        path = path if path.is_absolute() else folder / path
        where = f"{path}" + ("" if path.exists() else " (NOT found: moved or deleted)")
    return f"{where}, {width}"


def _found_note(locate, *args) -> str:
    try:
        locate(*args)
    except (OSError, ValueError) as err:
        return f" (NOT usable: {err})"
    return ""
