"""``TextEncoding``: what a frozen text encoder hands the transformer, one row per prompt.

Three tensors travel together: the per-token hidden states (cross-attention keys and values), the
mask of real tokens, and one pooled vector per prompt (STAR's start token). Batches with different
token counts (a conditional batch padded to the longest prompt and the null prompt ``""``, say) are
joined by ``TextEncoding.cat``, which pads hidden states with zeros and the mask with 0.

References: STAR (Ma et al. 2025), ``models/text_encoder.py`` (hidden states, attention mask, pooled
output); diffusers ``StableDiffusionPipeline.encode_prompt`` (conditional and null rows in one batch).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TextEncoding:
    """Encoded prompts.

    Attributes:
        hidden: (B, T, D) float hidden states, one row of T tokens per prompt.
        mask: (B, T) int64, 1 for a real token (special tokens included), 0 for padding.
        pooled: (B, D) float, one vector per prompt.
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self) -> None:
        if self.hidden.dim() != 3:
            raise ValueError(f"hidden must be (batch, tokens, width), got shape {tuple(self.hidden.shape)}")
        batch_size, length, width = self.hidden.shape
        if tuple(self.mask.shape) != (batch_size, length):
            raise ValueError(
                f"mask must be (batch, tokens) = {(batch_size, length)} to match hidden, got {tuple(self.mask.shape)}"
            )
        if tuple(self.pooled.shape) != (batch_size, width):
            raise ValueError(
                f"pooled must be (batch, width) = {(batch_size, width)} to match hidden, got {tuple(self.pooled.shape)}"
            )
        if self.mask.dtype != torch.int64:
            raise ValueError(f"mask must be int64 (1 = real token, 0 = padding), got {self.mask.dtype}")
        if not (self.hidden.is_floating_point() and self.pooled.is_floating_point()):
            raise ValueError(f"hidden and pooled must be floating point, got {self.hidden.dtype}, {self.pooled.dtype}")

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> TextEncoding:
        """Select rows; an integer (Python, NumPy or a 0-d integer tensor) keeps the batch dimension (a batch of
        one) and must be in range, as for a list."""
        if (
            isinstance(index, torch.Tensor)
            and index.dim() == 0
            and not (index.is_floating_point() or index.dtype == torch.bool)
        ):
            index = index.item()
        if isinstance(index, numbers.Integral):
            index = int(index)  # np.int64 and friends would index the tensors as a scalar and drop the batch axis
            if not -len(self) <= index < len(self):
                raise IndexError(f"row {index} is out of range for {len(self)} prompts")
            index = slice(index, index + 1 if index != -1 else None)
        return TextEncoding(self.hidden[index], self.mask[index], self.pooled[index])

    @property
    def length(self) -> int:
        """T, the number of token positions (padding included)."""
        return self.hidden.shape[1]

    @property
    def width(self) -> int:
        """D, the hidden width of the encoder."""
        return self.hidden.shape[2]

    @property
    def device(self) -> torch.device:
        return self.hidden.device

    def to(self, device: str | torch.device) -> TextEncoding:
        """The same encoding on ``device`` (dtypes unchanged)."""
        return TextEncoding(self.hidden.to(device), self.mask.to(device), self.pooled.to(device))

    def pad_to(self, length: int) -> TextEncoding:
        """Pad the token axis to ``length`` with zero hidden states and mask 0 (padding never shortens)."""
        if length < self.length:
            raise ValueError(f"cannot pad {self.length} tokens to {length}; pad_to only lengthens")
        extra = length - self.length
        if extra == 0:
            return self
        hidden = torch.nn.functional.pad(self.hidden, (0, 0, 0, extra))  # (B, length, D)
        mask = torch.nn.functional.pad(self.mask, (0, extra))  # (B, length)
        return TextEncoding(hidden, mask, self.pooled)

    @classmethod
    def cat(cls, encodings: Sequence[TextEncoding]) -> TextEncoding:
        """Stack encodings along the batch axis, padding each to the longest T first.

        Example (a CFG batch): ``TextEncoding.cat([prompts, null, null])`` with ``prompts`` of 2 rows
        and 9 tokens and ``null`` (the encoding of ``""``) of 1 row and 2 tokens gives 4 rows of 9 tokens;
        the null rows' tokens 3..9 are zeros with mask 0.
        """
        encodings = list(encodings)
        if not encodings:
            raise ValueError("TextEncoding.cat needs at least one encoding")
        widths = {encoding.width for encoding in encodings}
        if len(widths) != 1:
            raise ValueError(f"cannot concatenate encodings of different widths {sorted(widths)}; use one encoder")
        length = max(encoding.length for encoding in encodings)
        padded = [encoding.pad_to(length) for encoding in encodings]
        return cls(
            torch.cat([encoding.hidden for encoding in padded]),
            torch.cat([encoding.mask for encoding in padded]),
            torch.cat([encoding.pooled for encoding in padded]),
        )
