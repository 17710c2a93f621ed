"""Sampling math as small pure functions: temperature, top-k, top-p, CFG, multinomial and Gumbel draws.

Every random draw takes an explicit ``torch.Generator``. ``None`` switches a filter off; 0 and -1 never
do (they raise). The filters reproduce the official VAR ``sample_with_top_k_top_p_`` bit for bit, so
that the same seed gives the same tokens as the official sampler.

References:
    VAR ``models/helpers.py`` (sample_with_top_k_top_p_, gumbel_softmax_with_rng);
    Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration" (nucleus sampling);
    Ho & Salimans 2022, "Classifier-Free Diffusion Guidance".
"""

from __future__ import annotations

import math
import numbers

import torch


def check_sampling_args(top_k: int | None, top_p: float | None, temperature: float, cfg: float) -> None:
    """Raise ValueError (TypeError for non-numbers) for values that would silently mean something else or make
    the multinomial draw fail (inf, nan, negative numbers), naming the valid range."""
    if top_k is not None:
        if not _is_real(top_k) or not math.isfinite(top_k) or int(top_k) != top_k or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, or None to turn it off; got {top_k!r}")
    if top_p is not None and not (_is_real(top_p) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1], or None to turn it off; got {top_p!r}")
    if not (_is_real(temperature) and 0.0 < temperature < math.inf):
        raise ValueError(
            f"temperature must be a finite number > 0 (1.0 leaves the logits unchanged); got {temperature!r}"
        )
    if not (_is_real(cfg) and 0.0 <= cfg < math.inf):
        raise ValueError(f"cfg must be a finite number >= 0 (0 turns guidance off); got {cfg!r}")


def _is_real(value: object) -> bool:
    """A real number (Python or NumPy; not a bool, not a string)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature; exactly 1.0 returns the input untouched (the official sampler has none)."""
    return logits if temperature == 1.0 else logits / temperature


def top_k_filter(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Set every logit strictly below the k-th largest of its row to -inf.

    Ties with the k-th value survive, so more than k entries can remain (as in the official code).
    Example: row [3, 1, 2, 2] with top_k=2 keeps [3, 2, 2] (the k-th largest is 2, both 2s stay).
    """
    if top_k is None or top_k >= logits.shape[-1]:
        return logits
    # int(): a whole float (2.0, np.float64(900)) passes check_sampling_args; topk takes ints only
    kth_largest = logits.topk(int(top_k), largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Keep the smallest set of largest-probability entries whose mass is >= top_p; the rest -> -inf.

    Computed like the official code: sort ascending, and drop every entry whose ascending cumulative
    probability is <= 1 - top_p; the largest entry always survives.
    Example: probabilities [0.5, 0.3, 0.15, 0.05] with top_p=0.8: ascending cumsum [0.05, 0.2, 0.5, 1.0];
    1 - top_p = 0.2, so 0.05 and 0.15 are dropped and [0.5, 0.3] (mass 0.8) are kept.
    """
    if top_p is None:
        return logits
    sorted_logits, sorted_idx = logits.sort(dim=-1, descending=False)
    sorted_remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
    sorted_remove[..., -1:] = False
    remove = sorted_remove.scatter(sorted_idx.ndim - 1, sorted_idx, sorted_remove)
    return logits.masked_fill(remove, float("-inf"))


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """Temperature, then top-k, then top-p (the official order of the two filters)."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


def sample_tokens(logits_BlV: torch.Tensor, generator: torch.Generator | None, num_samples: int = 1) -> torch.Tensor:
    """One multinomial draw over all (batch, position) rows, in row-major order.

    Args:
        logits_BlV: (B, l, V) filtered logits.
        generator: the random generator (None uses torch's global one).
        num_samples: draws per position, with replacement.
    Returns:
        (B, l, num_samples) int64 token ids.
    """
    return _draw(logits_BlV.softmax(dim=-1), generator, num_samples)


def sample_tokens_with_probability(
    logits_BlV: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_tokens` (one draw per position) that also returns each drawn token's probability under the
    filtered distribution (STAR's ``sample_with_top_k_top_p_(..., return_conf=True)``, the masked sampler's
    confidence).

    Returns:
        (B, l) int64 tokens and their (B, l) float32 probabilities.
    """
    probs = logits_BlV.softmax(dim=-1)
    tokens = _draw(probs, generator, 1)  # (B, l, 1)
    return tokens[..., 0], probs.gather(-1, tokens)[..., 0]


def _draw(probs_BlV: torch.Tensor, generator: torch.Generator | None, num_samples: int) -> torch.Tensor:
    batch, length, vocab = probs_BlV.shape
    try:
        draws = torch.multinomial(
            probs_BlV.view(-1, vocab), num_samples=num_samples, replacement=True, generator=generator
        )
    except RuntimeError as err:  # found by the draw itself: checking every scale first would cost a device sync
        if "probability tensor contains" not in str(err):
            raise
        raise ValueError(
            "the logits overflowed to infinity or NaN (an extreme cfg or a tiny temperature, or non-finite model "
            "weights); use a cfg of a few units and a temperature near 1"
        ) from None
    return draws.view(batch, length, num_samples)


def classifier_free_guidance(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 + w) * cond - w * uncond: w = 0 returns the conditional logits."""
    return (1 + weight) * cond_logits - weight * uncond_logits


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    """Soft Gumbel-softmax sample, softmax((logits + g) / tau), with g = -log(Exp(1)) from ``generator``."""
    gumbels = (
        -torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_(generator=generator).log()
    )
    return ((logits + gumbels) / tau).softmax(dim=-1)


def smooth_tau(ratio: float) -> float:
    """The official Gumbel temperature of the "more smooth" mode: max(0.27 (1 - 0.95 ratio), 0.005)."""
    return max(0.27 * (1 - ratio * 0.95), 0.005)
