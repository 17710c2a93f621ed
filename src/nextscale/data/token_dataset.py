"""Reading a token folder: ``TokenShardDataset``, with the checks it makes when it opens one.

Opening a folder checks that every shard the manifest lists is there, that the shards' headers fit it (shapes,
dtypes, labels) and that every token id and class label is in range, so a damaged folder or one from another
run stops before training starts, with what to do; given a tokenizer, it also checks that it made the tokens.
The layout is described in :mod:`nextscale.data.token_shards`.

A folder of several views per image (``tokenize --views N``, shards of (n, N, L) tokens) gives view
``epoch % N`` of each image: the crop that training from the images makes in that epoch (see
:mod:`nextscale.data.token_shards`).

A row with several captions gives one per access, drawn from ``numpy.random.default_rng([seed, epoch,
index])`` as ``CaptionDataset`` draws it, so sample ``index`` of epoch ``e`` has the same caption on every
worker, machine and resume (the training loop calls ``set_epoch``), and every caption is seen over the epochs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import nn
from torch.utils.data import Dataset

from nextscale.data.token_manifest import MANIFEST_NAME, config_hash, read_manifest, weights_hash


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
            expected = [length] if self.views == 1 else [self.views, length]
            if list(shape[1:]) != expected:
                views = "" if self.views == 1 else f" of {self.views} views per image"
                raise self._refuse(
                    path,
                    f"its tokens have shape {list(shape)}, but the manifest's scales {self.manifest['scale_sides']} "
                    f"make rows{views} of {length} tokens",
                )
            if shape[0] != count:
                raise self._refuse(path, f"it holds {shape[0]} rows, but {MANIFEST_NAME} says {count}")
            if self.is_captioned:  # metadata is part of the header: a broken caption list stops here, not in a worker
                self._parse_captions(path, handle.metadata() or {}, count)
            else:
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
            rows, *row_shape = tokens.get_shape()
            per_row = max(1, math.prod(row_shape))
            step = max(1, (1 << 24) // per_row)  # about 16 M tokens at a time bounds the memory
            for start in range(0, rows, step):
                chunk = tokens[start : start + step]
                low, high = torch.aminmax(chunk)
                if low < 0 or high >= vocab:
                    where = ((chunk < 0) | (chunk >= vocab)).nonzero()[0].tolist()  # row, [view,] position
                    view = f", view {where[1]}" if len(where) == 3 else ""
                    raise self._refuse(
                        path,
                        f"row {start + where[0]}{view} holds token id {int(chunk[tuple(where)])} (position "
                        f"{where[-1]}), but the tokenizer's vocabulary is 0..{vocab - 1}",
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
        """Select the epoch whose caption draws ``seed`` reproduces (and, with several views, its view)."""
        self.epoch = epoch

    @property
    def views(self) -> int:
        """Token rows per image: 1, or N for ``tokenize --views N`` (read: view ``epoch % N``)."""
        return int(self.manifest.get("views", 1))

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

    def _parse_captions(self, path: Path, metadata: dict[str, str], count: int) -> list[tuple[str, ...]]:
        """Every row's captions from a shard's metadata; a row of an older shard (a list of strings) has one."""
        if "captions" not in metadata:
            raise self._refuse(path, "it holds no captions, but the manifest says the data is captioned")
        try:
            entries = json.loads(metadata["captions"])
        except json.JSONDecodeError as err:
            raise self._refuse(path, f"its captions are not valid JSON ({err})") from err
        rows = [(entry,) if isinstance(entry, str) else entry for entry in entries] if isinstance(entries, list) else []
        if len(rows) != count or not all(
            isinstance(row, list | tuple) and row and all(isinstance(text, str) for text in row) for row in rows
        ):
            raise self._refuse(path, f"its captions are not one non-empty list of strings for each of its {count} rows")
        return [tuple(row) for row in rows]

    def _shard_captions(self, shard_idx: int) -> list[tuple[str, ...]]:
        """Every row's captions (checked when the folder opened)."""
        if shard_idx not in self._captions:
            path = self.root / self.shards[shard_idx]["file"]
            metadata = self._handle(shard_idx).metadata() or {}
            self._captions[shard_idx] = self._parse_captions(path, metadata, int(self.shards[shard_idx]["count"]))
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
        tokens = handle.get_slice("tokens")[row : row + 1][0].long()  # (L,), or (views, L)
        if self.views > 1:
            tokens = tokens[self.epoch % self.views]
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
