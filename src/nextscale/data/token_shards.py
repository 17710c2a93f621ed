"""Pre-tokenized datasets: encode images once with a frozen tokenizer, train the transformer from tokens.

Layout of a token folder::

    manifest.json            {"format", "count", "total_tokens", "scale_sides", "vocab_size", "dtype",
                              "shards": [{"file", "count"}], "tokenizer": {"config", "config_hash",
                              "weights_hash"}, "source", "condition", "left_out", "class_names" (class data,
                              when known)}
    shard-00000.safetensors  "tokens" (n, L) int16 (int32 when V > 32767), and either "labels" (n,) int64
                             (class data) or, for captioned data, every caption of each row in the file's
                             metadata (key "captions": a JSON list of n lists of strings); the manifest's
                             "condition" says which. Metadata "left_out" names the images of the shard's
                             range that could not be decoded.

Shard ``i`` covers dataset indices ``[i * shard_size, (i + 1) * shard_size)``; each image is read exactly once
(``read(index)`` where the dataset has it), so an image that fails to decode is left out, never replaced by
another image: a shard may hold fewer rows than its range, the manifest's counts are the rows really written,
and its "left_out" lists the images left out (a shard whose every image was left out is not listed). Older
shards whose "captions" are a list of strings (one caption per row) still load.

A row with several captions gives one per access, drawn from ``numpy.random.default_rng([seed, epoch,
index])`` as ``CaptionDataset`` draws it, so sample ``index`` of epoch ``e`` has the same caption on every
worker, machine and resume (the training loop calls ``set_epoch``), and every caption is seen over the epochs.

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

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

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


Condition = int | tuple[str, ...]  # a class label, or every caption of one image


def _condition(value: Any) -> Condition:
    """A sample's label as an int, or its caption(s) as a tuple (a plain dataset gives one caption str)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)):
        return tuple(str(text) for text in value)
    return int(value)


def _image_name(dataset: Dataset, index: int) -> str:
    """How the log names sample ``index``: a caption sample's name, an image folder's file path."""
    samples = getattr(dataset, "samples", None)
    if samples is None:
        return f"sample {index}"
    sample = samples[index]
    return str(sample.name if hasattr(sample, "name") else sample[0])


def _encode_range(
    tokenizer: nn.Module,
    dataset: Dataset,
    indices: range,
    batch_size: int,
    dtype: torch.dtype,
    skip_unreadable: bool,
    bar: Any,
) -> tuple[torch.Tensor, list[Condition], list[str]]:
    """Tokens (n, L) of ``dtype``, conditions and left-out image names of the samples in ``indices``, each read once."""
    device = next(tokenizer.parameters()).device
    # ``read`` (caption datasets, image folders) returns the sample itself or raises: never a stand-in.
    exact = hasattr(dataset, "read")
    read = dataset.read if exact else dataset.__getitem__
    tokens, conditions, left_out = [], [], []
    for batch_start in range(indices.start, indices.stop, batch_size):
        batch = range(batch_start, min(batch_start + batch_size, indices.stop))
        images = []
        for index in batch:
            try:
                image, condition = read(index)
            except ValueError:
                if not (exact and skip_unreadable):  # a plain dataset's error is a bug, not a bad file
                    raise
                left_out.append(_image_name(dataset, index))
                continue
            images.append(image)
            conditions.append(_condition(condition))
        if images:
            indices_per_scale = tokenizer.encode(torch.stack(images).to(device))
            # Values up to V - 1 fit int16 when V <= 32768 (stored as signed; read back with .long()).
            tokens.append(tokenizer.tokens_from_indices(indices_per_scale).cpu().to(dtype))
        if bar is not None:
            bar.update(len(batch))
    total = tokenizer.config.schedule.total_tokens
    return (torch.cat(tokens) if tokens else torch.empty(0, total, dtype=dtype)), conditions, left_out


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
    skip_unreadable: bool = True,
) -> list[Path]:
    """Encode ``dataset`` into shards; rank r writes shards r, r + world, ... (see the module docstring).

    A dataset with a ``read(index)`` method (``CaptionDataset``, ``ImageFolderDataset``) is read through it,
    so each row stores all of its image's captions, and an image ``read`` cannot decode (ValueError) is left
    out and named in the shard's metadata; any other dataset is read with ``dataset[index]``.

    Args:
        tokenizer: a MultiScaleVQVAE in eval mode on its device.
        dataset: map-style dataset of (image (C, H, W) in [-1, 1], label or caption(s)) in a fixed order.
        out_dir: the token folder (created).
        batch_size: images per encoder call.
        shard_size: samples per shard range (a shard holds fewer rows when images are left out).
        rank, world_size: this process's share of the shards.
        progress: show a tqdm bar.
        skip_unreadable: leave out an image that cannot be decoded (True), or let the error stop the run (False,
            for ``--bad-images fail``).
    Returns:
        The shard files this rank wrote. Call :func:`write_manifest` once all ranks are done.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        indices = range(shard_idx * shard_size, min((shard_idx + 1) * shard_size, len(dataset)))
        tokens, conditions, left_out = _encode_range(
            tokenizer, dataset, indices, batch_size, dtype, skip_unreadable, bar
        )
        payload = {"tokens": tokens.contiguous()}
        metadata = {"format": "pt", "left_out": json.dumps(left_out)}
        captions = [list(condition) for condition in conditions if isinstance(condition, tuple)]
        if captions and len(captions) != len(conditions):
            raise ValueError("the dataset gives captions for some samples and labels for others; give one kind")
        if captions or not conditions:  # a shard with no rows carries both, empty: it fits either kind
            metadata["captions"] = json.dumps(captions)
        if not captions:
            payload["labels"] = torch.tensor(conditions, dtype=torch.int64)
        path = out_dir / shard_name(shard_idx)
        atomic_write(path, lambda tmp, payload=payload, metadata=metadata: save_file(payload, tmp, metadata=metadata))
        written.append(path)
    if bar is not None:
        bar.close()
    return written


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
        seed: a row with several captions gives the one ``numpy.random.default_rng([seed, epoch, index])``
            draws (``CaptionDataset``'s draw; call ``set_epoch`` each epoch).
    """

    def __init__(self, root: str | os.PathLike, tokenizer: nn.Module | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.shards = self.manifest["shards"]
        self.seed = seed
        self.epoch = 0
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
        self._captions: dict[int, list[tuple[str, ...]]] = {}
        for shard in self.shards:  # headers only: shapes and dtypes, no data read
            self._check_header(self.root / shard["file"], int(shard["count"]))
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        for shard in self.shards:
            self._check_values(self.root / shard["file"])

    def _refuse(self, path: Path, problem: str) -> ValueError:
        return ValueError(
            f"{path}: {problem}; the token folder is damaged or from another run: re-tokenize with "
            f"`nextscale tokenize --overwrite --out {self.root}` (and the same --tokenizer and --data)"
        )

    def _check_header(self, path: Path, count: int) -> None:
        """Raise ValueError unless the shard's header opens and its shapes fit the manifest (reads no data)."""
        try:
            handle = safe_open(str(path), framework="pt")
        except Exception as err:  # SafetensorError (a truncated file, a broken header) is no OSError subclass
            raise self._refuse(path, f"not a readable safetensors file ({err})") from err
        with handle:
            length = int(self.manifest["total_tokens"])
            keys = set(handle.keys())
            if "tokens" not in keys:
                raise self._refuse(path, "holds no 'tokens' tensor")
            tokens = handle.get_slice("tokens")
            shape, dtype = tuple(tokens.get_shape()), tokens.get_dtype()
            if dtype not in ("I16", "I32", "I64"):
                raise self._refuse(path, f"its tokens are {dtype}, not integers")
            if len(shape) != 2 or shape[1] != length:
                raise self._refuse(
                    path,
                    f"its tokens have shape {list(shape)}, but the manifest's scales {self.manifest['scale_sides']} "
                    f"make rows of {length} tokens",
                )
            if shape[0] != count:
                raise self._refuse(path, f"it holds {shape[0]} rows, but {MANIFEST_NAME} says {count}")
            if not self.is_captioned:
                labels = handle.get_slice("labels").get_shape() if "labels" in keys else None
                if labels != [count]:
                    found = "no 'labels' tensor" if labels is None else f"labels of shape {labels}"
                    raise self._refuse(path, f"it holds {found}, but {MANIFEST_NAME} says {count} labelled rows")

    def _check_values(self, path: Path) -> None:
        """Raise ValueError naming the first token id outside the vocabulary or label outside the classes.

        This reads the data once, in the opening process, so a bad value stops the run before training starts
        and never inside a DataLoader worker. Measured on ImageNet at 256 px (1.28 M rows of 680 int16 tokens,
        1.7 GB in 26 shards): 1.4 s from a cold disk, 0.1 s from the page cache.
        """
        vocab = int(self.manifest["vocab_size"])
        classes = self.classes
        with safe_open(str(path), framework="pt") as handle:
            tokens = handle.get_slice("tokens")
            rows, length = tokens.get_shape()
            step = max(1, (1 << 24) // max(length, 1))  # about 16 M tokens at a time bounds the memory
            for start in range(0, rows, step):
                chunk = tokens[start : start + step]
                low, high = torch.aminmax(chunk)
                if low < 0 or high >= vocab:
                    row, column = ((chunk < 0) | (chunk >= vocab)).nonzero()[0].tolist()
                    raise self._refuse(
                        path,
                        f"row {start + row} holds token id {int(chunk[row, column])} (position {column}), but the "
                        f"tokenizer's vocabulary is 0..{vocab - 1}",
                    )
            if self.is_captioned:
                return
            labels = handle.get_tensor("labels")
            top = len(classes) if classes is not None else None
            bad = (labels < 0) if top is None else (labels < 0) | (labels >= top)
            if labels.numel() and bool(bad.any()):
                row = int(bad.nonzero()[0])
                valid = "0 or more" if top is None else f"0..{top - 1} (the {top} classes in {MANIFEST_NAME})"
                raise self._refuse(path, f"row {row} has class label {int(labels[row])}, but labels must be {valid}")

    def check_schedule(self, config: Any, user: str) -> None:
        """Raise ValueError naming both schedules when these tokens were made by the tokenizer of ``config`` on
        other scales than the ones ``user`` (e.g. "this model") reads: VAR tokens hold every scale, a raster
        baseline's only the last map. A tokenizer that differs in more than its scales is left to the hash checks."""
        made = tuple(self.manifest["scale_sides"])
        sides = tuple(config.scale_sides)
        recorded = dict(self.manifest["tokenizer"].get("config") or {})
        wanted = json.loads(json.dumps(dataclasses.asdict(config)))  # as the manifest holds it: tuples are lists
        same_otherwise = {**recorded, "scale_sides": None} == {**wanted, "scale_sides": None}
        if made != sides and same_otherwise:
            raise ValueError(
                f"the tokens in {self.root} have scales {made} ({sum(s * s for s in made)} tokens), but {user} reads "
                f"scales {sides} ({sum(s * s for s in sides)} tokens); tokenize again with `nextscale tokenize "
                f"--scale-sides {','.join(map(str, sides))}` and the same tokenizer"
            )

    def check_tokenizer(self, tokenizer: nn.Module) -> None:
        """Raise ValueError unless ``tokenizer`` is the one that made these tokens."""
        self.check_schedule(tokenizer.config, "this tokenizer")
        saved = self.manifest["tokenizer"]
        if saved["config_hash"] != config_hash(tokenizer.config) or saved["weights_hash"] != weights_hash(tokenizer):
            raise ValueError(
                f"the tokens in {self.root} were made by a different tokenizer (config or weights "
                "differ); re-run `nextscale tokenize` with this tokenizer or pass the matching one"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose caption draws ``seed`` reproduces."""
        self.epoch = epoch

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

    def _shard_captions(self, shard_idx: int) -> list[tuple[str, ...]]:
        """Every row's captions; a row of an older shard (a list of strings) has one."""
        if shard_idx not in self._captions:
            path = self.root / self.shards[shard_idx]["file"]
            metadata = self._handle(shard_idx).metadata() or {}
            if "captions" not in metadata:
                raise ValueError(f"{path} has no captions; re-run tokenize")
            rows = [(entry,) if isinstance(entry, str) else tuple(entry) for entry in json.loads(metadata["captions"])]
            if len(rows) != int(self.shards[shard_idx]["count"]) or not all(
                row and all(isinstance(text, str) for text in row) for row in rows
            ):
                raise ValueError(
                    f"{path}: its captions are not one non-empty list of strings per row; re-run `nextscale tokenize`"
                )
            self._captions[shard_idx] = rows
        return self._captions[shard_idx]

    def captions_of(self, index: int) -> tuple[str, ...]:
        """Every caption stored for sample ``index`` (a captioned folder's)."""
        if not self.is_captioned:
            raise ValueError(f"{self.root} holds class labels, not captions")
        shard_idx, row = self._locate(index)
        return self._shard_captions(shard_idx)[row]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | str]:
        """Returns (tokens int64 (L,), the class label or one of the row's captions)."""
        shard_idx, row = self._locate(index)
        handle = self._handle(shard_idx)
        tokens = handle.get_slice("tokens")[row : row + 1][0].long()
        if self.is_captioned:
            captions = self._shard_captions(shard_idx)[row]
            # CaptionDataset's draw for the same (seed, epoch, index): with no image left out, training from
            # tokens sees the captions training from the images would.
            generator = np.random.default_rng([self.seed, self.epoch, index])
            return tokens, captions[int(generator.integers(len(captions)))]
        label = int(handle.get_slice("labels")[row : row + 1][0])
        return tokens, label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # memory maps do not pickle into worker processes
        state["_captions"] = {}
        return state
