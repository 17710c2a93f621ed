"""Pre-tokenized datasets: encode images once with a frozen tokenizer, train the transformer from tokens.

Layout of a token folder::

    manifest.json            {"format", "count", "total_tokens", "scale_sides", "vocab_size", "dtype",
                              "shards": [{"file", "count"}], "tokenizer": {"config", "config_hash",
                              "weights_hash"}, "source", "class_names" (class data, when known)}
    shard-00000.safetensors  "tokens" (n, L) int16 (int32 when V > 32767), and either "labels" (n,) int64
                             (class data) or, for captioned data, the captions as a JSON list in the
                             file's metadata (key "captions"); the manifest's "condition" says which

Tokens are the scales concatenated coarse to fine, row-major inside a scale (the pipeline's token layout).
The transformer trainer rebuilds the teacher-forcing input from them with the tokenizer's quantizer,
which costs a few small interpolations instead of a full encoder pass; the manifest's hashes make sure it
is the same tokenizer. Captions are stored as text, not as text-encoder features: the trainer encodes
each distinct caption once (``nextscale.text.cache``), which is cheaper here than reading features back
(measured in docs/benchmarks/caption_features.md) and keeps the folder small and encoder-independent.

References: LlamaGen ``autoregressive/train/extract_codes_c2i.py`` (pre-extracted codes).
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
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset, default_collate

from nextscale.pretrained import atomic_write, atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


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


@torch.no_grad()
def write_token_shards(
    tokenizer: nn.Module,
    dataset: Dataset,
    out_dir: str | os.PathLike,
    batch_size: int = 64,
    shard_size: int = 50_000,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> list[Path]:
    """Encode ``dataset`` (image, label) pairs into shards; rank r writes shards r, r + world, ...

    Args:
        tokenizer: a MultiScaleVQVAE in eval mode on its device.
        dataset: map-style dataset of (image (C, H, W) in [-1, 1], label) in a fixed order.
        out_dir: the token folder (created).
        batch_size: images per encoder call.
        shard_size: samples per shard file.
        rank, world_size: this process's share of the shards.
        progress: show a tqdm bar.
    Returns:
        The shard files this rank wrote. Call :func:`write_manifest` once all ranks are done.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(tokenizer.parameters()).device
    vocab = tokenizer.config.vocab_size
    dtype = torch.int16 if vocab <= torch.iinfo(torch.int16).max + 1 else torch.int32
    num_shards = -(-len(dataset) // shard_size)
    mine = list(range(rank, num_shards, world_size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(min(shard_size, len(dataset) - i * shard_size) for i in mine), desc="tokenize")
    written = []
    for shard_idx in mine:
        start, end = shard_idx * shard_size, min((shard_idx + 1) * shard_size, len(dataset))
        tokens, labels, captions = [], [], []
        for batch_start in range(start, end, batch_size):
            images, batch_conditions = default_collate(
                [dataset[i] for i in range(batch_start, min(batch_start + batch_size, end))]
            )
            indices = tokenizer.encode(images.to(device))
            # Values up to V - 1 fit int16 when V <= 32768 (stored as signed; read back with .long()).
            tokens.append(tokenizer.tokens_from_indices(indices).cpu().to(dtype))
            if isinstance(batch_conditions, (list, tuple)):  # captions (default_collate keeps strings)
                captions.extend(str(text) for text in batch_conditions)
            else:
                labels.append(torch.as_tensor(batch_conditions, dtype=torch.int64))
            if bar is not None:
                bar.update(len(batch_conditions))
        payload = {"tokens": torch.cat(tokens).contiguous()}
        metadata = {"format": "pt"}
        if captions:
            metadata["captions"] = json.dumps(captions)
        else:
            payload["labels"] = torch.cat(labels).contiguous()
        path = out_dir / shard_name(shard_idx)
        atomic_write(path, lambda tmp, payload=payload, metadata=metadata: save_file(payload, tmp, metadata=metadata))
        written.append(path)
    if bar is not None:
        bar.close()
    return written


def write_manifest(
    tokenizer: nn.Module,
    num_samples: int,
    out_dir: str | os.PathLike,
    shard_size: int,
    source: str = "",
    condition: str = "class",
    class_names: list[str] | None = None,
) -> Path:
    """Write manifest.json after every shard exists (checked); ``condition`` is "class" or "text";
    ``class_names[i]`` names label i (an image folder's sub-folders, Fashion-MNIST's classes), when known."""
    if condition not in ("class", "text"):
        raise ValueError(f"condition must be 'class' or 'text', got {condition!r}")
    out_dir = Path(out_dir)
    schedule = tokenizer.config.schedule
    shards = []
    for shard_idx in range(-(-num_samples // shard_size)):
        path = out_dir / shard_name(shard_idx)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; a tokenization rank did not finish")
        shards.append({"file": path.name, "count": min(shard_size, num_samples - shard_idx * shard_size)})
    vocab = tokenizer.config.vocab_size
    manifest = {
        "format": FORMAT_VERSION,
        "count": num_samples,
        "total_tokens": schedule.total_tokens,
        "scale_sides": list(schedule.sides),
        "vocab_size": vocab,
        "dtype": "int16" if vocab <= 32768 else "int32",
        "shards": shards,
        "tokenizer": tokenizer_identity(tokenizer),
        "source": source,
        "condition": condition,
    }
    if class_names is not None:
        manifest["class_names"] = list(class_names)
    path = out_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {root} is not a token folder (make one with `nextscale tokenize`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run `nextscale tokenize`") from err
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; this version reads {FORMAT_VERSION}")
    return manifest


class TokenShardDataset(Dataset):
    """A token folder as (tokens int64 (L,), label) or (tokens, caption) pairs, read lazily from the shards.

    Args:
        root: the token folder.
        tokenizer: if given, its config and weights must be those the tokens were made with.
    """

    def __init__(self, root: str | os.PathLike, tokenizer: nn.Module | None = None) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.shards = self.manifest["shards"]
        self.starts = []
        total = 0
        for shard in self.shards:
            if not (self.root / shard["file"]).is_file():
                raise FileNotFoundError(f"{self.root / shard['file']} listed in the manifest is missing")
            self.starts.append(total)
            total += int(shard["count"])
        if total != self.manifest["count"]:
            raise ValueError(
                f"{self.root}: the shards hold {total} samples, the manifest says {self.manifest['count']}"
            )
        self._handles: dict[int, Any] = {}
        self._captions: dict[int, list[str]] = {}
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)

    def check_tokenizer(self, tokenizer: nn.Module) -> None:
        """Raise ValueError unless ``tokenizer`` is the one that made these tokens."""
        saved = self.manifest["tokenizer"]
        if saved["config_hash"] != config_hash(tokenizer.config) or saved["weights_hash"] != weights_hash(tokenizer):
            raise ValueError(
                f"the tokens in {self.root} were made by a different tokenizer (config or weights "
                "differ); re-run `nextscale tokenize` with this tokenizer or pass the matching one"
            )

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        lo, hi = 0, len(self.starts) - 1
        while lo < hi:  # last shard whose start <= index
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.starts[mid] <= index else (lo, mid - 1)
        return lo, index - self.starts[lo]

    def _handle(self, shard_idx: int) -> Any:
        # Opened lazily in the reading process (DataLoader workers each open their own memory maps).
        if shard_idx not in self._handles:
            self._handles[shard_idx] = safe_open(str(self.root / self.shards[shard_idx]["file"]), framework="pt")
        return self._handles[shard_idx]

    @property
    def classes(self) -> list[str] | None:
        """Names of the labels (``classes[i]`` is label i) when the tokenized data recorded them."""
        return self.manifest.get("class_names")

    @property
    def is_captioned(self) -> bool:
        return self.manifest.get("condition", "class") == "text"

    def _shard_captions(self, shard_idx: int) -> list[str]:
        if shard_idx not in self._captions:
            metadata = self._handle(shard_idx).metadata() or {}
            if "captions" not in metadata:
                raise ValueError(f"{self.root / self.shards[shard_idx]['file']} has no captions; re-run tokenize")
            self._captions[shard_idx] = json.loads(metadata["captions"])
        return self._captions[shard_idx]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        shard_idx, row = self._locate(index)
        handle = self._handle(shard_idx)
        tokens = handle.get_slice("tokens")[row : row + 1][0].long()
        if self.is_captioned:
            return tokens, self._shard_captions(shard_idx)[row]
        label = int(handle.get_slice("labels")[row : row + 1][0])
        return tokens, label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # memory maps do not pickle into worker processes
        state["_captions"] = {}
        return state
