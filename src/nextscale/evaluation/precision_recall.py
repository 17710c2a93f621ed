"""Improved precision and recall of generated samples in a feature space.

Each set's manifold is the union of balls around its points, each ball's radius being the distance to the
point's k-th nearest neighbour within the set (k = 3 in the paper). Precision is the share of generated
points inside the real manifold (fidelity); recall is the share of real points inside the generated manifold
(coverage).

Worked example: real = fake = the same points -> every point lies in its own ball -> (1.0, 1.0). Two clouds
far apart -> no point reaches the other cloud's balls -> (0.0, 0.0).

References: Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
Models" (arXiv:1904.06991).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

NEIGHBOURS = 3  # k of the k-th nearest-neighbour radii (the paper's)


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def _as_tensor(features: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(features).detach().to(torch.float64).cpu()
    if tensor.ndim != 2 or tensor.shape[0] < 2:
        raise ValueError(f"{name} must be (N >= 2, D), got {tuple(tensor.shape)}")
    if not tensor.isfinite().all():  # a NaN distance is never <= a radius: a plausible, wrong score
        raise ValueError(f"{name} hold NaN or infinite values: the features (or the images) are not finite")
    return tensor


def knn_radii(features: torch.Tensor, k: int = NEIGHBOURS, chunk_size: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest other point of the same set, float64 (N,)."""
    if not 1 <= k < features.shape[0]:
        raise ValueError(f"k must be in [1, {features.shape[0] - 1}] for {features.shape[0]} points, got {k}")
    radii = []
    for chunk in torch.split(features, chunk_size):
        distances = torch.cdist(chunk, features)  # (chunk, N)
        # k + 1 smallest: the point itself (distance 0) comes first.
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def _share_inside(queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk_size: int) -> float:
    """Share of ``queries`` within ``radii[j]`` of at least one ``points[j]``."""
    inside = 0
    for chunk in torch.split(queries, chunk_size):
        distances = torch.cdist(chunk, points)  # (chunk, N)
        inside += int((distances <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(
    real_features: np.ndarray | torch.Tensor,
    fake_features: np.ndarray | torch.Tensor,
    k: int = NEIGHBOURS,
    chunk_size: int = 1024,
) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Args:
        real_features: (N_real, D) features of real images.
        fake_features: (N_fake, D) features of generated images (same extractor).
        k: neighbourhood size for the radii (paper: 3).
        chunk_size: rows of the distance matrix computed at once (memory ~ chunk_size x N x 8 bytes).

    Returns:
        ``PrecisionRecall(precision, recall)``, both in [0, 1].
    """
    real = _as_tensor(real_features, "real_features")
    fake = _as_tensor(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ ({real.shape[1]} vs {fake.shape[1]}); use one extractor")
    real_radii = knn_radii(real, k, chunk_size)
    fake_radii = knn_radii(fake, k, chunk_size)
    precision = _share_inside(fake, real, real_radii, chunk_size)
    recall = _share_inside(real, fake, fake_radii, chunk_size)
    return PrecisionRecall(precision, recall)
