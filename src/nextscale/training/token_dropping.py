"""Token dropping for high-resolution STAR training (the official ``drop_scale_length``).

At 1024 px a sequence has L = 9,451 tokens; the official last training stage keeps N = 8,800 of them per
step. Every position before the start of a chosen scale (there the last, 64 x 64, which starts at 5,355) is
kept; L - N of the positions from that start on are drawn at random and removed from the sequence, from its
block-causal mask and from its RoPE table (``TextScaleTransformer.forward(..., keep=...)``), and from the
targets; the loss becomes the mean over the N kept tokens. One draw per micro-batch serves all of its samples.
Held-out evaluation always runs on full sequences: dropping is a training-time augmentation.

Worked example (sides (1, 2, 4), L = 21, dropping from scale 2, which starts at position 5, keeping N = 17):
positions 5..20 (16 of them) may be dropped; if ``randperm(16)`` begins [3, 11, 0, 7, ...], its first
L - N = 4 entries shifted by the start (8, 16, 5 and 12) are dropped, and the model runs on positions 0-4, 6, 7, 9,
10, 11, 13, 14, 15, 17, ..., 20.

The draw is ``torch.randperm`` on the generator given. The trainer gives none, so it draws from the process's
CPU RNG: the official code's source too (its global RNG), and the stream every checkpoint saves, so a resumed
run draws what an uninterrupted run would. Each rank draws its own set (its RNGs are seeded per rank), like
drop-path and condition dropout.

References:
    Ma et al., STAR (arXiv 2406.10797); official ``models/var_drop.py`` (``VAR.drop_scale``) and ``trainer.py``;
    STAR_REFERENCE.md section 6.
"""

from __future__ import annotations

import torch

from nextscale.scales import ScaleSchedule


def token_drop_start(schedule: ScaleSchedule, keep_tokens: int, from_scale: int | None) -> int:
    """The first droppable position, after checking the settings against the schedule.

    Args:
        schedule: the scale schedule of the trained sequences.
        keep_tokens: N, tokens kept per sequence.
        from_scale: the first scale whose tokens may be dropped; None means the last scale (the official 1024 px
            stage).

    Returns:
        The position where scale ``from_scale`` starts; every position before it is always kept.

    Raises:
        ValueError: the scale is not one of 1..K-1, or N is not in [that start, L - 1]; the message says the range.
    """
    last = schedule.num_scales - 1
    from_scale = last if from_scale is None else from_scale
    if not 1 <= from_scale <= last:
        raise ValueError(
            f"--drop-tokens-from-scale must be a scale index in 1..{last} (scale 0 is the start token), got "
            f"{from_scale}; leave it out to drop from the last scale"
        )
    start, length = schedule.offsets[from_scale], schedule.total_tokens
    if not start <= keep_tokens < length:
        raise ValueError(
            f"--keep-tokens must be in {start}..{length - 1} for scales {schedule.sides}: a sequence has {length} "
            f"tokens and the {start} before scale {from_scale} are always kept, got {keep_tokens}; give a value in "
            "that range (a lower --drop-tokens-from-scale allows fewer), or leave it out to train on full sequences"
        )
    return start


def kept_positions(length: int, start: int, keep_tokens: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw which positions of a sequence stay: all before ``start``, and a random ``keep_tokens - start`` after.

    The dropped positions are ``arange(start, length)[randperm(length - start, generator)[:length - keep_tokens]]``,
    as in the official ``drop_scale``.

    Args:
        length: L, tokens per sequence.
        start: first droppable position.
        keep_tokens: N, positions kept.
        generator: source of the draw (its device is used); None is torch's global CPU generator.

    Returns:
        (N,) int64 kept positions in increasing order, on the generator's device.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    dropped = start + torch.randperm(length - start, generator=generator, device=device)[: length - keep_tokens]
    keep = torch.ones(length, dtype=torch.bool, device=device)
    keep[dropped] = False
    return keep.nonzero().squeeze(1)


def per_scale_mean_of_kept(values: torch.Tensor, levels: torch.Tensor, num_scales: int) -> torch.Tensor:
    """Per-scale means over the kept tokens only.

    Args:
        values: (B, N) per-token values at the kept positions.
        levels: (N,) int64 scale index of each kept position.
        num_scales: K.

    Returns:
        (B, K) float32 means; NaN for a scale with no kept token in this draw: nothing of it was trained, so the
        step has no value for it (the loop averages per-scale metrics over the values present and leaves a scale
        with none out of metrics.jsonl, ``training/metrics.py``).
    """
    # Sums by index (not a matmul, which autocast would run in half precision).
    sums = values.new_zeros(values.shape[0], num_scales, dtype=torch.float32).index_add_(1, levels, values.float())
    return sums / torch.bincount(levels, minlength=num_scales)
