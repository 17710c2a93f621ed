"""Pooling of per-token hidden states into one vector per prompt: small pure functions.

``mean`` averages the real tokens only (sentence-transformers' mean pooling); ``mean_all`` averages
every position, padding included, which is what STAR's T5 ablation does (Flan-T5-XL, 120 positions);
``cls`` takes the first token; ``max`` the per-channel maximum over real tokens; ``mean_sqrt_len``
divides the sum by the square root of the number of real tokens. CLIP's ``eos`` pooling is the text
model's own ``pooler_output`` and lives in the CLIP encoder.

References: sentence-transformers ``models/Pooling.py``; STAR ``models/t5_embedder.py``.
"""

from __future__ import annotations

import torch


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens.

    Args:
        hidden: (B, T, D) hidden states.
        mask: (B, T), 1 for real tokens, 0 for padding.

    Returns:
        (B, D). A row without real tokens gives zeros (the count is clamped to 1, never divided by 0).
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return (hidden * weights).sum(dim=1) / count


def mean_all(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over all T positions, padding included (STAR's T5 ablation); ``mask`` is ignored."""
    return hidden.mean(dim=1)


def first_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first position ([CLS] for BERT tokenizers); ``mask`` is ignored."""
    return hidden[:, 0]


def masked_max(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-channel maximum over real tokens (padding set to -1e9 first, as sentence-transformers does)."""
    padding = (mask == 0).unsqueeze(-1)  # (B, T, 1)
    return hidden.masked_fill(padding, -1e9).max(dim=1).values


def masked_mean_sqrt_len(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real tokens divided by the square root of their count."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    count = weights.sum(dim=1).clamp(min=1.0)  # (B, 1)
    return (hidden * weights).sum(dim=1) / count.sqrt()


POOLINGS = {
    "mean": masked_mean,
    "mean_all": mean_all,
    "cls": first_token,
    "max": masked_max,
    "mean_sqrt_len": masked_mean_sqrt_len,
}
