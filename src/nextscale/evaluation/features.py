"""Feature extraction with an injected extractor, for FID, precision/recall and friends.

An extractor is any callable ``images (B, 3, H, W) in [-1, 1] -> features (B, D)``: the FID Inception network
(``evaluation.inception.load_inception``), the Fashion-MNIST classifier's embedding, or a tiny random network in
tests. Metrics never build their own network, so they stay testable without downloads.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nextscale.evaluation.fid import FeatureStats, StatsAccumulator
from nextscale.pretrained import atomic_write

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] rounded to the 256 values an 8-bit PNG holds, still in [-1, 1] (same shape).

    Generated images are measured as the files they become (``--save-samples``, ``sample --out-dir``), so a score
    of the tensors equals the score of those files. Example: 0.003 -> pixel round(127.88) = 128 -> 0.00392.
    """
    return images.float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().div(127.5).sub(1.0)


def _images_of(batch: torch.Tensor | tuple | list) -> torch.Tensor:
    """Accept bare image batches or DataLoader items ``(images, labels, ...)``; gray images become RGB."""
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected image batches (B, 1|3, H, W) in [-1, 1], got {shape}")
    if images.dtype == torch.uint8:  # 8-bit pixels: every extractor takes [-1, 1] (0 -> -1, 255 -> 1)
        images = images.float().div(127.5).sub(1.0)
    elif not images.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1] (or uint8 pixels), got {images.dtype}")
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)  # extractors take RGB; gray -> three equal channels
    return images


def iter_features(
    extractor: FeatureExtractor, image_batches: Iterable, progress: bool = True, max_images: int | None = None
) -> Iterable[np.ndarray]:
    """Yield ``extractor`` features (B, D) as float64 NumPy arrays, batch by batch.

    Args:
        extractor: images (B, 3, H, W) in [-1, 1] -> features (B, D).
        image_batches: iterable of (B, C, H, W) tensors in [-1, 1] (or uint8 pixels 0-255), C = 1 or 3, or of
            (images, labels) pairs.
        progress: show a tqdm bar (counts images).
        max_images: stop after this many images (the last batch is cut); None = all.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 (or None for all), got {max_images}")
    seen = 0
    total = max_images
    if total is None and isinstance(image_batches, torch.utils.data.DataLoader):
        total = len(image_batches.dataset)  # a bar with a total shows the time left
    with tqdm(total=total, unit="img", disable=not progress, desc="features") as bar:
        for batch in image_batches:
            images = _images_of(batch)
            if max_images is not None:
                images = images[: max_images - seen]
            # Inference mode around the call only: held across the `yield`, it would stay on in the caller's code
            # between batches (tensors made there could never join an autograd graph).
            with torch.inference_mode():
                features = extractor(images)
            if features.ndim != 2 or features.shape[0] != images.shape[0]:
                raise ValueError(
                    f"the extractor returned {tuple(features.shape)} for {images.shape[0]} images; "
                    "it must return (B, D)"
                )
            seen += images.shape[0]
            bar.update(images.shape[0])
            yield features.detach().double().cpu().numpy()
            if max_images is not None and seen >= max_images:
                break


def compute_features(
    extractor: FeatureExtractor, image_batches: Iterable, progress: bool = True, max_images: int | None = None
) -> np.ndarray:
    """All features stacked: float64 (N, D). Arguments as in ``iter_features``."""
    chunks = list(iter_features(extractor, image_batches, progress=progress, max_images=max_images))
    if not chunks:
        raise ValueError("no images were given to the feature extractor")
    return np.concatenate(chunks)


def stream_features(
    extractor: FeatureExtractor,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    feature_batch: int = 50,
    observers: Sequence[Callable[[torch.Tensor, torch.Tensor], None]] = (),
    progress: bool = True,
    total: int | None = None,
) -> np.ndarray:
    """Features of generated batches, keeping only the features: float64 (N, D).

    Each (images, labels) batch is shown to every observer (e.g. a PNG writer, a classifier tally), cut into
    ``feature_batch`` chunks for the extractor, and dropped before the next batch is drawn. So memory holds
    at most one generated batch of images, never the whole set (50,000 images of 256 px in float32 would be
    39 GB; their 2048-d Inception features are 0.8 GB).

    Args:
        extractor: images (b, 3, H, W) in [-1, 1] -> features (b, D).
        batches: iterable (usually a generator) of (images (B, C, H, W) in [-1, 1], labels (B,)).
        feature_batch: images per extractor call.
        observers: called as ``observer(images, labels)`` on every batch, before its features.
        progress: tqdm bar over the features (counts images).
        total: the number of images the batches will hold, for the bar's time left (None: unknown).

    Returns:
        float64 (N, D).
    """
    if feature_batch < 1:
        raise ValueError(f"feature_batch must be >= 1, got {feature_batch}")
    chunks: list[np.ndarray] = []
    with tqdm(total=total, unit="img", disable=not progress, desc="features") as bar:
        for images, labels in batches:
            for observer in observers:
                observer(images, labels)
            chunks.extend(iter_features(extractor, torch.split(images, feature_batch), progress=False))
            bar.update(images.shape[0])
            del images, labels  # the generator makes the next batch while this loop holds nothing
    if not chunks:
        raise ValueError("no images were given to the feature extractor")
    return np.concatenate(chunks)


def compute_stats(
    extractor: FeatureExtractor, image_batches: Iterable, progress: bool = True, max_images: int | None = None
) -> FeatureStats:
    """Mean and covariance of the features, accumulated batch by batch (memory O(D^2), not O(N D)).

    Args:
        extractor: images (B, 3, H, W) in [-1, 1] -> features (B, D).
        image_batches: iterable of (B, C, H, W) tensors in [-1, 1] (C = 1 or 3), or of (images, labels) pairs.
        progress: show a tqdm bar.
        max_images: stop after this many images; None = all.

    Returns:
        ``FeatureStats`` ready for ``fid_from_stats`` or ``save``.
    """
    accumulator = StatsAccumulator()
    for features in iter_features(extractor, image_batches, progress=progress, max_images=max_images):
        accumulator.update(features)
    return accumulator.finalize()


def read_feature_cache(path: str | os.PathLike, features: bool = True) -> tuple[str, np.ndarray | None]:
    """The key and features (N, D) of a ``cached_features`` file; ``features=False`` reads only the key (cheap).

    Raises:
        ValueError: the file is not such a cache (truncated, another kind of file such as a plain ``.npy``, or
            missing an array): one line that says to delete it, never a zipfile traceback.
    """
    path = Path(path)
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, np.lib.npyio.NpzFile):  # an .npy file loads as a bare array
            raise ValueError("it holds one array, not the arrays 'key' and 'features'")
        with stored:
            if "features" not in stored.files:
                raise KeyError("features is not a file in the archive")
            stored_key = str(stored["key"])
            array = stored["features"] if features else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a feature cache ({err}); delete it to recompute") from err
    if array is not None and array.ndim != 2:
        raise ValueError(f"{path} holds features of shape {array.shape}, not (N, D); delete it to recompute")
    return stored_key, array


def cached_features(
    extractor: FeatureExtractor,
    image_batches: Callable[[], Iterable],
    cache: str | os.PathLike | None,
    key: dict[str, object],
    progress: bool = True,
) -> np.ndarray:
    """Features of a fixed image set (the FID reference), kept in a ``.npz`` file between runs.

    The reference side of FID costs as much as the samples side or more (10,000 Fashion-MNIST test images
    through the CPU Inception take about 18 min here), and it never changes for a given reference,
    feature network and image size: those go into ``key``, which is stored with the features and must
    match on reading.

    Args:
        extractor: images -> features (B, D).
        image_batches: called only when the cache cannot be used; returns the batches.
        cache: the ``.npz`` file, or None for no caching.
        key: JSON-serialisable description of what the features are of.
        progress: tqdm bar while computing.

    Returns:
        float64 (N, D).

    Raises:
        ValueError: the cache file was made for another key, or is unreadable.
    """
    if cache is None:
        return compute_features(extractor, image_batches(), progress=progress)
    path = Path(cache)
    wanted = json.dumps(key, sort_keys=True)
    if path.is_file():
        stored_key, features = read_feature_cache(path)
        if stored_key != wanted:
            raise ValueError(
                f"{path} holds features of {stored_key}, not of {wanted}; pass another cache file or delete it"
            )
        return features
    features = compute_features(extractor, image_batches(), progress=progress)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a path
            np.savez(handle, key=np.array(wanted), features=features)

    atomic_write(path, write)
    return features
