"""Pre-tokenized datasets: encode images once with a frozen tokenizer, train the transformer from tokens.

This module writes the shards; ``token_manifest`` writes and reads manifest.json, and ``token_dataset`` reads a
folder back (``TokenShardDataset``) and checks it when it opens.

Layout of a token folder::

    manifest.json            {"format", "count", "total_tokens", "scale_sides", "vocab_size", "dtype",
                              "shards": [{"file", "count"}], "tokenizer": {"config", "config_hash",
                              "weights_hash"}, "source", "condition", "left_out", "class_names" (class data,
                              when known), "views" (when more than 1), "split" (the tokenize --split)}
    shard-00000.safetensors  "tokens" (n, L) int16 (int32 when V > 32767), or (n, views, L) for a folder of
                             several views per image (manifest "views"), and either "labels" (n,) int64
                             (class data) or, for captioned data, every caption of each row in the file's
                             metadata (key "captions": a JSON list of n lists of strings); the manifest's
                             "condition" says which. Metadata "left_out" names the images of the shard's
                             range that could not be decoded.

Shard ``i`` covers dataset indices ``[i * shard_size, (i + 1) * shard_size)``; each image is read exactly once
(``read(index)`` where the dataset has it), so an image that fails to decode is left out, never replaced by
another image: a shard may hold fewer rows than its range, the manifest's counts are the rows really written,
and its "left_out" lists the images left out (a shard whose every image was left out is not listed). Older
shards whose "captions" are a list of strings (one caption per row) still load.

Several views per image (``tokenize --views N``): a folder tokenized once fixes each image's crop, while training
from the images draws a new random crop every epoch (VAR's augmentation). With N views, view v of image i is the
crop training from the images makes in epoch v (the dataset's training transform with ``set_epoch(v)``, from the
same seed), and training from the tokens reads view ``epoch % N`` (``TokenShardDataset``): the first N epochs see
exactly the crops training from the images would, and later epochs cycle through them. LlamaGen's ten-crop code
extraction is the same idea with fixed crops.

Tokens are the scales concatenated coarse to fine, row-major inside a scale (the pipeline's token layout).
The transformer trainer rebuilds the teacher-forcing input from them with the tokenizer's quantizer,
which costs a few small interpolations instead of a full encoder pass; the manifest's hashes make sure it
is the same tokenizer. Captions are stored as text, not as text-encoder features: the trainer encodes
each distinct caption once (``nextscale.text.cache``), which is cheaper here than reading features back
(measured in docs/benchmarks/caption_features.md) and keeps the folder small and encoder-independent.

References: LlamaGen ``autoregressive/train/extract_codes_c2i.py`` (pre-extracted codes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Dataset

from nextscale.data.token_manifest import shard_name
from nextscale.pretrained import atomic_write

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
    views: int = 1,
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
        views: encodings per image; view v is read after ``dataset.set_epoch(v)`` (a dataset with random crops
            gives the crop of epoch v), and the shard's tokens are then (n, views, L).
    Returns:
        The shard files this rank wrote. Call :func:`write_manifest` once all ranks are done.
    """
    if views < 1 or (views > 1 and not hasattr(dataset, "set_epoch")):
        raise ValueError(f"views must be 1, or more for a dataset with set_epoch (random crops); got {views}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.config.vocab_size
    dtype = torch.int16 if vocab <= torch.iinfo(torch.int16).max + 1 else torch.int32
    num_shards = -(-len(dataset) // shard_size)
    mine = list(range(rank, num_shards, world_size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        images = sum(min(shard_size, len(dataset) - i * shard_size) for i in mine)
        bar = tqdm(total=images * views, desc="tokenize")
    written = []
    for shard_idx in mine:
        indices = range(shard_idx * shard_size, min((shard_idx + 1) * shard_size, len(dataset)))
        encoded = []
        for view in range(views):
            if views > 1:
                dataset.set_epoch(view)  # the crops of epoch `view`; decoding (and so what is left out) is the same
            encoded.append(_encode_range(tokenizer, dataset, indices, batch_size, dtype, skip_unreadable, bar))
        tokens, conditions, left_out = encoded[0]
        if views > 1:
            tokens = torch.stack([view_tokens for view_tokens, _, _ in encoded], dim=1)  # (n, views, L)
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
