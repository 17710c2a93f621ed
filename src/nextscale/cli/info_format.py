"""How `nextscale info` writes numbers: parameter counts, durations, plurals and crop margins."""

from __future__ import annotations

from typing import Any


def millions(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


def duration(seconds: float) -> str:
    """3725 -> "1.0 h", 95 -> "1.6 min", 40 -> "40 s"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def counted(number: int, noun: str) -> str:
    """ "1 shard", "2 shards"."""
    return f"{number} {noun}{'s' * (number != 1)}"


def crop_margin_line(margin: Any) -> str:
    """How a recorded crop margin crops (see ``nextscale.training.crop_margin``)."""
    if margin == 1:
        return "1 (the crops keep the whole shorter side)"
    return f"{margin:g} (shorter side resized to {margin:g}x the crop, then cropped)"
