"""Encode captions once: a memo of per-caption encodings in front of a frozen text encoder.

Training re-reads the same captions every epoch (and synthetic data sets repeat captions across images),
so each distinct caption is encoded once, stored trimmed to its real tokens, and batches are assembled
by padding (``TextEncoding.cat``). The encoder's outputs at real tokens do not depend on the padding
of the batch they were computed in (attention masks), so a cached batch equals a fresh one up to
floating-point rounding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from nextscale.text.encoders import TextEncoder
from nextscale.text.encoding import TextEncoding


class CachedTextEncoder:
    """``encode(prompts)`` with a least-recently-used memo of ``max_entries`` captions.

    Args:
        encoder: the frozen encoder.
        max_entries: captions kept (each costs about T x D floats).
    """

    def __init__(self, encoder: TextEncoder, max_entries: int = 200_000) -> None:
        self.encoder = encoder
        self.max_entries = max_entries
        self._memo: OrderedDict[str, TextEncoding] = OrderedDict()
        self.hits = self.misses = 0

    @property
    def width(self) -> int:
        return self.encoder.width

    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        """(B,) captions -> a TextEncoding padded to the longest caption of this batch."""
        prompts = list(prompts)
        new = sorted({text for text in prompts if text not in self._memo})
        self.misses += len(new)
        self.hits += len(prompts) - len(new)
        if new:
            fresh = self.encoder.encode(new)
            for row, text in enumerate(new):
                real = int(fresh.mask[row].sum())  # masks are prefix masks: real tokens first
                self._memo[text] = TextEncoding(
                    fresh.hidden[row : row + 1, :real].clone(),
                    fresh.mask[row : row + 1, :real].clone(),
                    fresh.pooled[row : row + 1].clone(),
                )
        for text in prompts:
            self._memo.move_to_end(text)
        encoding = TextEncoding.cat([self._memo[text] for text in prompts])
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)
        return encoding

    def to(self, device: str | torch.device) -> CachedTextEncoder:
        self.encoder.to(device)
        self._memo.clear()
        return self
