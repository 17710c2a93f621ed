"""Refusals of parallel set-ups that would go wrong silently or fail late, made before any work.

Kept free of torch, so that the CLI checks its flags before it loads models or reads data.
"""

from __future__ import annotations

import argparse

from nextscale.training.config import TrainConfig


def check_parallelism(config: TrainConfig | argparse.Namespace, world_size: int) -> None:
    """Refuse, before any work, the strategies that would go wrong with ``world_size`` processes.

    ``config`` is a ``TrainConfig`` or the command's parsed flags (the CLI checks before it reads any data): only
    ``strategy``, ``ema_decay`` and ``preview_every`` are read.

    Raises:
        ValueError: one line naming the problem and the flag that fixes it.
    """
    if world_size > 1 and config.strategy == "none":
        # Nothing would sync the gradients: W unrelated models, each trained on its 1/W of the data, and rank 0
        # saves its own one, while the logged loss (averaged over ranks) looks normal.
        raise ValueError(
            f"--strategy none is for one process, and this run has {world_size}: use --strategy ddp (or fsdp) "
            "under torchrun, or start a single process"
        )
    if world_size > 1 and config.strategy == "fsdp" and config.ema_decay is None and config.preview_every:
        # Rank 0 samples previews alone, from the EMA's copy (never sharded) or else from the raw weights, which
        # FSDP shards in place: sampling would fail at the first preview, mixing its shards with whole tensors.
        raise ValueError(
            "--strategy fsdp keeps the raw weights sharded, so rank 0 cannot sample previews from them: keep an "
            "EMA (--ema-decay, e.g. 0.9999) or turn previews off with --preview-every none"
        )
