"""Exponential moving average of a model's weights (the weights ``export`` ships by default).

``shadow = decay * shadow + (1 - decay) * param`` after every optimizer step, for floating parameters;
buffers (codebook usage statistics, counters) are copied as they are. The official VAR trainer keeps no
EMA; DiT and most VQGAN trainers do, and it costs one copy of the weights.

References: DiT ``train.py`` (``update_ema``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """An EMA copy of a plain (unwrapped) module.

    Args:
        model: the module to track; its current weights are the starting point.
        decay: weight of the old average per step, in [0, 1).
        warmup: if True the effective decay is ``min(decay, (1 + n) / (10 + n))`` after n updates, so the
            average is not dominated by the random initialisation in short runs.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s weights (call after every optimizer step)."""
        decay = self.current_decay()
        own = dict(self.module.named_parameters())
        for name, param in model.named_parameters():
            target = own[name]
            value = param.detach()
            if hasattr(value, "full_tensor"):  # an FSDP2 shard: gather the whole tensor
                value = value.full_tensor()
            if target.is_floating_point():
                target.lerp_(value.to(target.dtype), 1.0 - decay)
            else:
                target.copy_(value)
        own_buffers = dict(self.module.named_buffers())
        for name, buffer in model.named_buffers():
            if name in own_buffers:  # a derived buffer built on first use (the dense mask) may exist on one side only
                own_buffers[name].copy_(buffer)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "module": {name: tensor.detach().cpu().clone() for name, tensor in self.module.state_dict().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["module"], strict=True)
