"""Generate N class-balanced samples from a pipeline, batch by batch, for metrics or for disk.

Labels cycle through the classes (0, 1, ..., C-1, 0, 1, ...), so every class gets N / C samples
(the official FID protocol: 50 per class for 50k ImageNet samples). Batch b uses the generator seeded
with ``seed + b``: a run is reproducible, and any batch can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from nextscale.data.images import to_pil
from nextscale.sampling.pipeline import Pipeline


def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """(N,) labels cycling through the classes."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return torch.arange(num_samples) % num_classes


def generate_batches(
    pipeline: Pipeline, num_samples: int, batch_size: int = 64, seed: int = 0, progress: bool = True, **sampling
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images (b, C, H, W) in [-1, 1], labels (b,)) until ``num_samples`` images were made.

    Args:
        pipeline: the model.
        num_samples: total number of images.
        batch_size: images per sampling call.
        seed: batch b is drawn with seed ``seed + b``.
        progress: tqdm bar.
        **sampling: cfg, top_k, top_p, temperature, smooth (see ``Pipeline.__call__``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = balanced_labels(num_samples, pipeline.num_classes)
    with tqdm(total=num_samples, unit="img", desc="sampling", disable=not progress) as bar:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            batch_labels = labels[start : start + batch_size]
            out = pipeline(class_labels=batch_labels, seed=seed + index, output_type="pt", **sampling)
            bar.update(len(batch_labels))
            yield out.images.mul(2).sub(1).cpu(), batch_labels


def save_samples(batches, folder: str | Path) -> int:
    """Write every image as ``{index:06d}_class{label}.png``; returns the count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for images, labels in batches:
        for image, label in zip(to_pil(images), labels.tolist()):
            image.save(folder / f"{count:06d}_class{label}.png")
            count += 1
    return count
