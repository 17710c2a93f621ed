"""Activation checkpointing of the transformer blocks: keep only each block's input in the forward pass and
recompute the block's inside in the backward pass.

A training step then stores one (B, L, C) tensor per block instead of every intermediate (the attention's
queries, keys, values and output, the FFN's 4C-wide hidden layer, the norms), for one more forward of the
blocks (about a third more compute). The numbers do not change: the recomputation replays the same operations
with the same random state (drop-path and dropout draws), so losses and gradients are bit-identical on the
same machine, and the choice is a runtime switch, like the mask's form, not part of the model config.

References:
    Chen et al., "Training Deep Nets with Sublinear Memory Cost", arXiv 1604.06174.
    PyTorch ``torch.utils.checkpoint.checkpoint`` (non-reentrant form: works under DDP, FSDP2 and
    torch.compile, and with inputs that do not require gradients).
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

Model = TypeVar("Model", bound="RecomputedBlocks")


class RecomputedBlocks:
    """Mixin of the transformers whose teacher-forced forward may recompute its blocks (:meth:`run_block`)."""

    recompute_blocks: bool = False

    def use_activation_checkpointing(self: Model, enabled: bool = True) -> Model:
        """Recompute every block's activations in the backward pass (``enabled``) or keep them (the default);
        returns the model."""
        self.recompute_blocks = bool(enabled)
        return self

    def run_block(self, block: nn.Module, *args: object) -> torch.Tensor:
        """``block(*args)``, checkpointed when recomputation is on and autograd records this forward."""
        if self.recompute_blocks and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)
