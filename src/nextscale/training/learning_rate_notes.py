"""Lines that say what a run's learning rate is and when it is too low to learn: the start line with the peak lr and
how it was derived, and the note for a transformer loss still at chance (the uniform guess, ``chance.at_chance``).

VAR's rule (peak = base lr x batch / 256, kept as the default) scales the official 3e-4 at batch 768 down to 3.1e-06
at batch 8, where a tiny run's loss stays at ln(vocab) and nothing else says why.
"""

from __future__ import annotations

import math

from nextscale.training.chance import at_chance
from nextscale.training.config import TrainConfig

# A rule-derived peak below this gets a hint: a tenth of the official recipe's peak (1e-4 x 768 / 256 = 3e-4), and
# below every recipe in configs/ (the lowest, 5e-5, fine-tunes a trained STAR). Tiny text runs at 3.1e-06 (batch 8),
# 5e-06 (batch 16) and 1.25e-05 (batch 32) stayed at chance loss for 40-60 steps; at --lr 3e-3 the same run learned.
LOW_PEAK_LR = 3e-5
# What small runs of each kind train with here (--lr), and the run files that show it.
SMALL_RUN_LR = {"transformer": "2e-3 to 3e-3", "tokenizer": "2e-3"}
SMALL_RUN_FILES = {
    "transformer": "configs/own_captions_transformer.json (batch 16) and configs/tiny_text_transformer.json (batch 8)",
    "tokenizer": "configs/own_images_tokenizer.json and configs/tiny_tokenizer.json (batch 16)",
}


def peak_lr_line(config: TrainConfig, kind: str) -> str:
    """The start line: the peak lr, how it was derived, and for a rule-derived peak below ``LOW_PEAK_LR`` what small
    runs of this ``kind`` ("transformer" or "tokenizer") learn with.

    Example: ``peak lr 3.1e-06 = --base-lr 0.0001 x batch 8 / 256 (VAR's rule; --lr sets the peak directly)``.
    """
    if config.lr is not None:
        return f"peak lr {config.lr:.2g} (--lr, set directly; VAR's rule --base-lr x batch / 256 is not used)"
    line = (
        f"peak lr {config.peak_lr:.2g} = --base-lr {config.base_lr:g} x batch {config.batch_size} / 256 "
        "(VAR's rule; --lr sets the peak directly)"
    )
    if config.peak_lr < LOW_PEAK_LR:
        line += (
            f"; too low for a small run to learn much: small runs here train with --lr {SMALL_RUN_LR[kind]}, as "
            f"{SMALL_RUN_FILES[kind]}"
        )
    return line


def chance_note(step: int, vocab_size: int, peak_lr: float, losses: dict[str, float | None]) -> str | None:
    """A note when any of ``losses`` (e.g. {"training": 6.237, "held-out": None}; None: not measured) is still at
    chance, ln(``vocab_size``), after ``step`` steps, suggesting a higher --lr or more steps; None otherwise."""
    stuck = [
        f"{name} loss {loss:.4f}" for name, loss in losses.items() if loss is not None and at_chance(loss, vocab_size)
    ]
    if not stuck:
        return None
    return (
        f"note: at step {step} the {' and '.join(stuck)} {'is' if len(stuck) == 1 else 'are'} still about "
        f"ln({vocab_size}) = {math.log(vocab_size):.4f}, the uniform guess: the model has learned nothing yet; give a "
        f"higher --lr than the peak {peak_lr:.2g} (small runs here: {SMALL_RUN_LR['transformer']}) or more steps"
    )
