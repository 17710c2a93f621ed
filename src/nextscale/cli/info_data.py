"""`nextscale info` on training data (class folders, fashion-mnist, captions:) and on a token folder made from it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nextscale.cli.info_format import counted, crop_margin_line
from nextscale.training.crop_margin import CROP_MARGIN_FIELD


def describe_tokens(folder: Path) -> dict[str, Any]:
    from nextscale.data.token_manifest import read_manifest

    manifest = read_manifest(folder)
    sides = manifest["scale_sides"]
    report: dict[str, Any] = {
        "what": f"{folder}: a token folder",
        "sequences": f"{manifest['count']} in {counted(len(manifest['shards']), 'shard')} ({manifest['dtype']})"
        + (f", {manifest['views']} views (random crops) each" if manifest.get("views", 1) > 1 else ""),
        "scales": f"{len(sides)} ({', '.join(map(str, sides))}), {manifest['total_tokens']} tokens",
        "vocabulary": manifest["vocab_size"],
        "condition": manifest.get("condition", "class"),
        "source": manifest.get("source") or "?",
    }
    if CROP_MARGIN_FIELD in manifest:
        report["crop_margin"] = crop_margin_line(manifest[CROP_MARGIN_FIELD])
    if manifest.get("class_names"):
        report["classes"] = len(manifest["class_names"])
    if manifest.get("left_out"):
        report["left_out"] = _left_out_line(manifest["left_out"])
    return report


LEFT_OUT_NAMED = 3  # the undecodable files `info` names; manifest.json lists them all


def _left_out_line(left_out: list[str]) -> str:
    """ "2 undecodable images: a.jpg, b.png" (the first ``LEFT_OUT_NAMED`` of them named, then "..." and where the
    rest are listed)."""
    named = ", ".join(str(name) for name in left_out[:LEFT_OUT_NAMED])
    more = f", ... (all {len(left_out)} in manifest.json)" if len(left_out) > LEFT_OUT_NAMED else ""
    return f"{counted(len(left_out), 'undecodable image')}: {named}{more}"


def describe_data(spec: str) -> dict[str, Any]:
    """Training data (``--data SPEC``): the ``data``, ``files`` and ``held-out`` lines train-tokenizer logs at
    start-up (``cli.data_report.data_summary``), read at the image size and channels it picks by default (captioned
    images: at the bundled text tokenizer's, which the text recipe tokenizes them with)."""
    from nextscale.cli.data_report import data_summary
    from nextscale.presets import get_preset
    from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX, data_channels

    preset = _train_tokenizer_default("preset")
    config, _ = get_preset(preset)
    side, channels = config.image_size, data_channels(spec) or config.in_channels  # as train-tokenizer picks them
    reader = f"train-tokenizer's default (preset {preset})"
    if spec.startswith(CAPTIONS_PREFIX):
        kind = "captioned images"
        # the text path tokenizes with a trained tokenizer (the README's bundled:scenes), never var-d16's 256 px RGB
        side, channels = _bundled_text_tokenizer_shape()
        reader = "as `tokenize --tokenizer bundled:scenes` reads them; another tokenizer reads at its own"
    elif spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        kind = "Fashion-MNIST"
    else:
        kind = "an image folder (class sub-folders)"
    report: dict[str, Any] = {"what": f"{spec}: training data, {kind}"}
    for line in data_summary(spec, side, channels):
        key, _, value = line.partition(": ")
        report[key] = f"{report[key]}; {value}" if key in report else value
    report["read_at"] = (
        f"{side}x{side} px, {'grayscale' if channels == 1 else 'RGB'}: {reader}; "
        "--resolution changes which files are too small to use"
    )
    return report


def _bundled_text_tokenizer_shape() -> tuple[int, int]:
    """Image side and channels of bundled:scenes's tokenizer, from its config.json (no weights loaded)."""
    from nextscale.pretrained import bundled_model_path, config_from_dict, read_json_file
    from nextscale.tokenizer.config import TokenizerConfig

    folder = bundled_model_path("scenes") / "tokenizer"
    saved = read_json_file(folder / "config.json", f"the bundled scenes tokenizer is missing at {folder}")
    config = config_from_dict(TokenizerConfig, saved["config"])
    return config.image_size, config.in_channels


def _train_tokenizer_default(option: str) -> Any:
    """The default of one train-tokenizer option, read from its parser (so the two never disagree)."""
    from nextscale.cli import train_tokenizer

    parser = argparse.ArgumentParser()
    train_tokenizer.add_arguments(parser)
    return parser.get_default(option)


def holds_class_folders(folder: Path, looked_at: int = 1000) -> bool:
    """Whether ``folder`` reads as image training data: a sub-folder (of ``folder``, or of ``folder/train``) holds
    image files, and none is a nextscale folder (a folder of runs is no data, although runs hold preview PNGs)."""
    from itertools import islice

    from nextscale.data.folders import folder_layout
    from nextscale.data.image_listing import IMAGE_EXTENSIONS

    subfolders = [sub for sub in folder_layout(folder).train_dir.iterdir() if sub.is_dir()]
    subfolders = [sub for sub in subfolders if not sub.name.startswith(".")]
    markers = ("pipeline.json", "config.json", "manifest.json", "sweep.json")
    if any((sub / name).is_file() for sub in subfolders for name in markers):
        return False
    return any(
        path.suffix.lower() in IMAGE_EXTENSIONS for sub in subfolders for path in islice(sub.rglob("*"), looked_at)
    )
