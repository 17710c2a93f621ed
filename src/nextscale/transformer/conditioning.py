"""Class conditioning with a reserved null class, which owns the condition dropout used by CFG.

Labels 0..num_classes-1 are real classes; id ``num_classes`` is the null class. During training a
label is replaced by the null id with probability ``drop_rate``, so the same network also learns the
unconditional distribution that classifier-free guidance subtracts at sampling time.

References:
    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    DiT ``models.py`` (``LabelEmbedder.token_drop``); VAR ``models/var.py`` (``class_emb``, ``cond_drop_rate``).
    Unlike the official VAR forward, labels are dropped only in training mode, never in evaluation.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassEmbedder(nn.Module):
    """Embedding table of ``num_classes + 1`` rows; the last row is the null (unconditional) class.

    Args:
        num_classes: number of real classes.
        embed_dim: width C of the condition vector.
        drop_rate: training-time probability of replacing a label by the null id.
    """

    def __init__(self, num_classes: int, embed_dim: int, drop_rate: float) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"condition drop rate must be in [0, 1), got {drop_rate}")
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.embedding = nn.Embedding(num_classes + 1, embed_dim)

    @property
    def null_id(self) -> int:
        return self.num_classes

    def null_labels(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """(batch_size,) int64 filled with the null id: the unconditional half of a CFG batch."""
        if device is None:
            device = self.embedding.weight.device
        return torch.full((batch_size,), self.null_id, dtype=torch.long, device=device)

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raise a ValueError/TypeError unless ``labels`` is a (B,) integer tensor in [0, num_classes]."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"class labels must be a tensor, got {type(labels).__name__}")
        if labels.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"class labels must be int64 (e.g. torch.tensor([207, 980])), got {labels.dtype}")
        if labels.ndim != 1:
            raise ValueError(f"class labels must have shape (B,), got {tuple(labels.shape)}")
        # The range check reads values back from the device; skip it while torch.compile traces.
        if labels.numel() and not torch.compiler.is_compiling():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high > self.null_id:
                raise ValueError(
                    f"class labels must lie in 0..{self.num_classes - 1}, or be {self.null_id} for the null class; "
                    f"got values in [{low}, {high}]"
                )

    def drop_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace each label by the null id with probability ``drop_rate``.

        Args:
            labels: (B,) int64.
            generator: optional source of randomness (its device is used for the draw).

        Returns:
            (B,) int64, a new tensor.
        """
        device = generator.device if generator is not None else labels.device
        draw = torch.rand(labels.shape[0], generator=generator, device=device).to(labels.device)
        return torch.where(draw < self.drop_rate, torch.full_like(labels, self.null_id), labels)

    def embed(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) labels -> (B, C) condition vectors, never dropped (sampling, evaluation)."""
        self.check_labels(labels)
        return self.embedding(labels)

    def forward(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B,) labels -> (B, C); in training mode labels are first dropped to the null id at ``drop_rate``."""
        self.check_labels(labels)
        if self.training and self.drop_rate > 0:
            labels = self.drop_labels(labels, generator)
        return self.embedding(labels)
