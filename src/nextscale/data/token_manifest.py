"""A token folder's manifest: its names, the tokenizer's identity hashes, and writing and reading manifest.json.

The folder's layout, and what the manifest's fields mean, are described in :mod:`nextscale.data.token_shards`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from nextscale.pretrained import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("count", "total_tokens", "scale_sides", "vocab_size", "shards", "tokenizer")  # what readers use


def config_hash(config: Any) -> str:
    """sha256 of a config dataclass as sorted JSON."""
    text = json.dumps(dataclasses.asdict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def weights_hash(module: nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed as bytes
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def tokenizer_identity(tokenizer: nn.Module) -> dict[str, Any]:
    return {
        "config": dataclasses.asdict(tokenizer.config),
        "config_hash": config_hash(tokenizer.config),
        "weights_hash": weights_hash(tokenizer),
    }


SHARD_GLOB = "shard-*.safetensors"  # every name shard_name gives


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def _shard_contents(path: Path) -> tuple[int, list[str]]:
    """(rows, names of the images left out) of one shard file, from its header alone."""
    with safe_open(str(path), framework="pt") as handle:
        rows = handle.get_slice("tokens").get_shape()[0]
        left_out = json.loads((handle.metadata() or {}).get("left_out", "[]"))
    return rows, left_out


def write_manifest(
    tokenizer: nn.Module,
    num_samples: int,
    out_dir: str | os.PathLike,
    shard_size: int,
    source: str = "",
    condition: str = "class",
    class_names: list[str] | None = None,
    views: int = 1,
    split: str | None = None,
    crop_margin: float | None = None,
) -> Path:
    """Write manifest.json after every shard exists (checked), counting the rows the shards really hold.

    Args:
        tokenizer: the tokenizer that made the tokens (its config and hashes are recorded).
        num_samples: ``len(dataset)`` of the tokenized data: with ``shard_size`` it fixes the shard ranges.
        out_dir: the token folder.
        shard_size: the ``write_token_shards`` shard size.
        source: where the data came from (shown in data reports).
        condition: "class" or "text".
        class_names: ``class_names[i]`` names label i (an image folder's sub-folders, Fashion-MNIST's classes),
            when known.
        views: token rows per image (``write_token_shards``' views); recorded when more than one.
        split: the ``tokenize --split`` the data was read with (train, val, test or all), recorded when given
            (captioned training tokens record their ``source`` without it, as tokens made before the split did).
        crop_margin: the ratio of the resized shorter side to the crop the images were cropped with
            (``tokenize --crop-margin``), recorded as "crop_margin" when given (None: no crop, Fashion-MNIST; a
            folder without the field was cropped with its data's default, see ``nextscale.training.crop_margin``).
    Returns:
        The manifest's path. Its "count" leaves out the images that could not be decoded ("left_out").
    """
    if condition not in ("class", "text"):
        raise ValueError(f"condition must be 'class' or 'text', got {condition!r}")
    out_dir = Path(out_dir)
    schedule = tokenizer.config.schedule
    shards, left_out = [], []
    for shard_idx in range(-(-num_samples // shard_size)):
        path = out_dir / shard_name(shard_idx)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; a tokenization rank did not finish")
        rows, names = _shard_contents(path)
        expected = min(shard_size, num_samples - shard_idx * shard_size)
        if rows + len(names) != expected:
            raise ValueError(
                f"{path} holds {rows} rows and {len(names)} left-out images, but its share of the data is "
                f"{expected} images: it is from another run; tokenize again into an empty folder (or --overwrite)"
            )
        left_out.extend(names)
        if rows:  # a shard whose every image was left out is never read
            shards.append({"file": path.name, "count": rows})
    count = sum(shard["count"] for shard in shards)
    if count == 0:
        example = f" (e.g. {left_out[0]})" if left_out else ""
        raise ValueError(
            f"no token sequences in {out_dir}: none of the {num_samples} images could be decoded{example}; "
            "replace the broken files or tokenize other data"
        )
    vocab = tokenizer.config.vocab_size
    manifest = {
        "format": FORMAT_VERSION,
        "count": count,
        "total_tokens": schedule.total_tokens,
        "scale_sides": list(schedule.sides),
        "vocab_size": vocab,
        "dtype": "int16" if vocab <= 32768 else "int32",
        "shards": shards,
        "tokenizer": tokenizer_identity(tokenizer),
        "source": source,
        "condition": condition,
        "left_out": left_out,
    }
    if class_names is not None:
        manifest["class_names"] = list(class_names)
    if views > 1:
        manifest["views"] = views
    if split is not None:
        manifest["split"] = split
    if crop_margin is not None:
        manifest["crop_margin"] = crop_margin
    path = out_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def is_training_split(manifest: dict[str, Any]) -> bool:
    """Whether the folder was tokenized from its data's training split (``tokenize --split train``): a loss measured
    on it is training loss, not held-out loss (``--split all`` may be a held-out folder of its own, so it is not)."""
    return manifest.get("split") == "train"


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a token folder (make one with `nextscale tokenize`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run `nextscale tokenize`") from err
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path} holds a JSON {type(manifest).__name__}, not a token manifest; re-run `nextscale tokenize`"
        )
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; this version reads {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    shards = manifest.get("shards")
    if not missing and not (
        isinstance(shards, list)
        and all(isinstance(shard, dict) and {"file", "count"} <= set(shard) for shard in shards)
    ):
        missing = ['"file" and "count" of every "shards" entry']
    if missing:
        raise ValueError(
            f"{path} lacks {', '.join(missing)}; it is damaged or was edited by hand: re-run `nextscale tokenize`"
        )
    return manifest
