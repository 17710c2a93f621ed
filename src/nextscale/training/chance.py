"""Chance loss: a cross-entropy no better than guessing every token uniformly, ln(vocab size). A run still there
learned nothing; a default lr scaled down to a small batch does this silently (5e-06 at batch 16). Training notes
it (``learning_rate_notes``) and scaling sweeps flag such runs (``scaling.chance``)."""

from __future__ import annotations

import math

# A loss above ln(V) x (1 - CHANCE_FRACTION) counts as chance: 1 % is 0.06 nats at V = 512, where trained tiny
# models sit 1-2 nats lower.
CHANCE_FRACTION = 0.01


def at_chance(loss: float, vocab_size: int) -> bool:
    """Whether a cross-entropy (nats per token) is no better than guessing every token uniformly."""
    return loss >= math.log(vocab_size) * (1 - CHANCE_FRACTION)
