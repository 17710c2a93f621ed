"""Conditioning: the class embedder with its null class, and the condition types the sampler passes around.

Labels 0..num_classes-1 are real classes; id ``num_classes`` is the null class. During training a
label is replaced by the null id with probability ``drop_rate``, so the same network also learns the
unconditional distribution that classifier-free guidance subtracts at sampling time.

References:
    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
    DiT ``models.py`` (``LabelEmbedder.token_drop``); VAR ``models/var.py`` (``class_emb``, ``cond_drop_rate``).
    Unlike the official VAR forward, labels are dropped only in training mode, never in evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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


# ---------------------------------------------------------------------------------------------------
# Condition types: what a transformer is conditioned on. Each one owns its unconditional (null or
# negative) rows and the CFG doubling, so the one sampling loop serves class and text models alike.


@dataclass(frozen=True)
class ClassCondition:
    """Class labels (B,) int64; ``null_id`` is the model's null class (the unconditional input)."""

    labels: torch.Tensor
    null_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.labels, torch.Tensor) or self.labels.ndim != 1 or self.labels.is_floating_point():
            raise TypeError("ClassCondition.labels must be a (B,) integer tensor")
        if self.labels.numel() == 0:
            raise ValueError("class labels are empty; give at least one label")
        low, high = int(self.labels.min()), int(self.labels.max())
        if low < 0 or high > self.null_id:
            bad = low if low < 0 else high
            raise ValueError(
                f"class label {bad} is out of range: this model has classes 0..{self.null_id - 1} "
                f"(and {self.null_id} for unconditional samples)"
            )

    @classmethod
    def of(cls, class_labels: torch.Tensor | Sequence[int], null_id: int, device: torch.device) -> ClassCondition:
        """Labels as given by a user (a list, a NumPy array, a tensor of any integer dtype, any shape) as a
        condition on ``device``; fractional or boolean values are refused rather than truncated (0.7 is no class).
        """
        labels = torch.as_tensor(class_labels, device=device).reshape(-1)
        if labels.numel() and (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool):
            raise TypeError(f"class labels must be integer ids (e.g. [3, 7]), got {labels.dtype} values")
        return cls(labels.long(), null_id)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str) -> ClassCondition:
        return ClassCondition(self.labels.to(device), self.null_id)

    def repeat_interleave(self, repeats: int) -> ClassCondition:
        """Each row ``repeats`` times in a row (several images per label)."""
        return ClassCondition(self.labels.repeat_interleave(repeats), self.null_id)

    def with_unconditional(self) -> ClassCondition:
        """The CFG batch: rows [0, B) conditional, rows [B, 2B) the null class."""
        return ClassCondition(torch.cat((self.labels, torch.full_like(self.labels, self.null_id))), self.null_id)


@dataclass(frozen=True)
class TextCondition:
    """Text-encoder features of B prompts, and the rows that guidance contrasts them with.

    Attributes:
        hidden: (B, T, D) per-token hidden states.
        mask: (B, T) int64, 1 = real token, 0 = padding.
        pooled: (B, D) pooled vector (the first token map is built from it).
        negative: the unconditional input: one row (the empty prompt's encoding, shared by every sample)
            or B rows (negative prompts). None when no guidance or dropout is needed.
        droppable: (B,) bool, which rows training-time dropout may replace (the official STAR loader drops
            only captions longer than 20 characters); None means every row.
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    negative: TextCondition | None = None
    droppable: torch.Tensor | None = None

    def __post_init__(self) -> None:
        hidden, mask, pooled = self.hidden, self.mask, self.pooled
        if hidden.ndim != 3 or mask.shape != hidden.shape[:2] or pooled.shape != (hidden.shape[0], hidden.shape[2]):
            raise ValueError(
                "text features must be hidden (B, T, D), mask (B, T) and pooled (B, D); got "
                f"{tuple(hidden.shape)}, {tuple(mask.shape)} and {tuple(pooled.shape)}"
            )
        if hidden.shape[0] == 0:
            raise ValueError("no prompts given; pass at least one prompt")
        negative = self.negative
        if negative is not None:
            if negative.width != self.width:
                raise ValueError(f"negative text features have width {negative.width}, the prompts {self.width}")
            if len(negative) not in (1, len(self)):
                raise ValueError(f"give 1 or {len(self)} negative rows, got {len(negative)}")
        droppable = self.droppable
        if droppable is not None and (droppable.dtype != torch.bool or droppable.shape != (len(self),)):
            raise ValueError(
                f"droppable must be a ({len(self)},) bool tensor, got {droppable.dtype} {tuple(droppable.shape)}"
            )

    def __len__(self) -> int:
        return self.hidden.shape[0]

    @property
    def width(self) -> int:
        return self.hidden.shape[2]

    def to(self, device: torch.device | str) -> TextCondition:
        negative = None if self.negative is None else self.negative.to(device)
        droppable = None if self.droppable is None else self.droppable.to(device)
        return TextCondition(self.hidden.to(device), self.mask.to(device), self.pooled.to(device), negative, droppable)

    def rows(self, index: torch.Tensor) -> TextCondition:
        """The selected rows (a per-row negative is selected too; a single null row is kept)."""
        negative = self.negative
        if negative is not None and len(negative) == len(self) and len(self) > 1:
            negative = negative.rows(index)
        index = index.to(self.hidden.device)
        droppable = None if self.droppable is None else self.droppable[index.to(self.droppable.device)]
        return TextCondition(self.hidden[index], self.mask[index], self.pooled[index], negative, droppable)

    def repeat_interleave(self, repeats: int) -> TextCondition:
        """Each prompt ``repeats`` times in a row (several images per prompt)."""
        return self.rows(torch.arange(len(self)).repeat_interleave(repeats))

    def with_unconditional(self) -> TextCondition:
        """The CFG batch: rows [0, B) the prompts, rows [B, 2B) the negative (or empty) prompt's features."""
        return concat_text(self, self.negative_rows())

    def negative_rows(self) -> TextCondition:
        """The negative as B rows (a single null row repeated)."""
        if self.negative is None:
            raise ValueError(
                "guidance needs unconditional text features: pass the empty prompt's encoding as the negative "
                "(or use cfg=0)"
            )
        if len(self.negative) == len(self):
            return self.negative
        return self.negative.rows(torch.zeros(len(self), dtype=torch.long))

    def drop(self, rate: float, generator: torch.Generator | None = None) -> TextCondition:
        """Training-time CFG dropout: each row becomes the negative (null) row with probability ``rate``; rows
        that are not ``droppable`` stay. One ``torch.rand(B)`` draw whichever rows are droppable, so the random
        stream does not depend on them."""
        if rate <= 0:
            return self
        device = generator.device if generator is not None else self.hidden.device
        dropped = torch.rand(len(self), generator=generator, device=device) < rate
        if self.droppable is not None:
            dropped &= self.droppable.to(dropped.device)
        both = concat_text(self, self.negative_rows())  # 2B rows padded to one T
        pick = torch.arange(len(self)) + len(self) * dropped.long().cpu()
        kept = both.rows(pick)
        return TextCondition(kept.hidden, kept.mask, kept.pooled, self.negative)


def concat_text(*conditions: TextCondition) -> TextCondition:
    """Stack text conditions along the batch, padding to the longest T (zeros, mask 0); negatives dropped."""
    length = max(c.hidden.shape[1] for c in conditions)
    hidden, mask = [], []
    for c in conditions:
        pad = length - c.hidden.shape[1]
        hidden.append(F.pad(c.hidden, (0, 0, 0, pad)))
        mask.append(F.pad(c.mask, (0, pad)))
    return TextCondition(torch.cat(hidden), torch.cat(mask), torch.cat([c.pooled for c in conditions]))


Condition = ClassCondition | TextCondition
