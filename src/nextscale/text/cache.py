"""Encode captions once: a memo of per-caption encodings in front of a frozen text encoder.

Training re-reads the same captions every epoch (and synthetic data sets repeat captions across images),
so each distinct caption is encoded once, stored trimmed to its real tokens, and batches are assembled
by padding (``TextEncoding.cat``). The encoder's outputs at real tokens do not depend on the padding
of the batch they were computed in (attention masks), so a cached batch equals a fresh one up to
floating-point rounding.

That rounding depends on the shape of the batch a caption is encoded in (a longer padding or another row count
runs other matrix-product blockings: up to ~2e-6 on MiniLM), and so did a caption's memo entry on the batch it
first met, which a resumed run (empty memo) meets differently. New captions are therefore encoded in canonical
chunks: captions of one token count together, exactly ``CHUNK_ROWS`` rows per call (the last chunk filled with
repeats). A row's result then depends on nothing but the caption, bit for bit, whatever its companions, so text
training resumes exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from nextscale.text.encoders import TextEncoder, check_prompts
from nextscale.text.encoding import TextEncoding

# Rows of every encoder call for new captions: a fixed shape per token count (see the module docstring).
CHUNK_ROWS = 8


class CachedTextEncoder:
    """``encode(prompts)`` with a least-recently-used memo of ``max_entries`` captions.

    The memo lives in CPU memory whatever the encoder's device: 200,000 captions of ~15 tokens are ~4 GB at MiniLM's
    width and ~12 GB at CLIP's, which on the GPU would be taken from training, step by step, until it ran out. Each
    batch is assembled there and moved to the encoder's device (a copy: bit for bit the encoder's values).

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
        prompts = check_prompts(prompts)  # a bare string would be read as one caption per character
        new = sorted({text for text in prompts if text not in self._memo})
        self.misses += len(new)
        self.hits += len(prompts) - len(new)
        for chunk in canonical_chunks(new, self.encoder):
            fresh = self.encoder.encode(chunk).to("cpu")
            for row, text in enumerate(chunk):
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
        return encoding.to(getattr(self.encoder, "device", "cpu"))  # where the encoder would have returned it

    def to(self, device: str | torch.device) -> CachedTextEncoder:
        self.encoder.to(device)
        self._memo.clear()
        return self


def canonical_chunks(captions: list[str], encoder: TextEncoder) -> list[list[str]]:
    """``captions`` as encoder calls of one shape per token count: grouped by their token count (one group when the
    encoder pads to ``max_length`` anyway), in chunks of exactly ``CHUNK_ROWS`` (the last one repeats its last
    caption)."""
    if not captions:
        return []
    if getattr(encoder, "padding", None) == "max_length":
        counts = [0] * len(captions)  # every call pads to max_length: one shape already
    elif hasattr(encoder, "token_counts"):
        counts = encoder.token_counts(captions)
    else:  # an encoder-like object without token counts: fixed row counts only
        counts = [0] * len(captions)
    groups: dict[int, list[str]] = {}
    for text, count in zip(captions, counts):
        groups.setdefault(count, []).append(text)
    chunks = []
    for group in groups.values():
        for start in range(0, len(group), CHUNK_ROWS):
            chunk = group[start : start + CHUNK_ROWS]
            chunks.append(chunk + [chunk[-1]] * (CHUNK_ROWS - len(chunk)))
    return chunks
