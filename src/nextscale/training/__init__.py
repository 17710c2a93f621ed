"""Training: one resumable loop (``Trainer``) with tokenizer and transformer steps, optimizers, EMA, checkpoints.

Names are imported lazily, so ``import nextscale.training.config`` (used by the CLI for its defaults)
does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "TokenizerLossConfig": "config",
    "TransformerObjective": "config",
    "seed_everything": "config",
    "Trainer": "loop",
    "TokenizerTrainer": "tokenizer_trainer",
    "TransformerTrainer": "transformer_trainer",
    "build_transformer": "transformer_trainer",
    "EMA": "ema",
    "build_adamw": "optim",
    "should_decay": "optim",
    "latest_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "export_run": "export",
    "load_tokenizer": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nextscale.training' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nextscale.training.{_EXPORTS[name]}"), name)
