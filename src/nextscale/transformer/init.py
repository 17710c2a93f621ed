"""The official VAR weight initialisation, shared by every model built from VAR blocks (the next-scale
transformer and the raster-scan baseline): both expose ``config`` (embed_dim, depth), ``start_pos``,
``pos_embed``, ``head``, ``head_norm`` and ``blocks``.

References: official ``models/var.py`` (``VAR.init_weights``); GPT-2 (residual scaling); DiT (AdaLN-Zero).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nextscale.layers.attention import INITIAL_LOG_TEMPERATURE


@torch.no_grad()
def init_linear_and_embedding(model: nn.Module, std: float) -> None:
    """Every Linear and Embedding of ``model``: truncated-normal weights of ``std``, zero biases (VAR and STAR)."""
    if not (isinstance(std, (int, float)) and 0 < std < math.inf):
        # The official code's init_std=-1 means "auto"; here that is None. A std <= 0 would give a wrong-width
        # normal (trunc_normal_ with a negative std) or a division by zero deep inside torch.
        raise ValueError(f"init_std must be a positive number, or None for sqrt(1 / (3 width)); got {std!r}")
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=std)


@torch.no_grad()
def init_var_weights(
    model: nn.Module,
    init_adaln: float = 0.5,
    init_adaln_gamma: float = 1e-5,
    init_head: float = 0.02,
    init_std: float | None = None,
) -> None:
    """(Re)initialise every parameter, following the official VAR recipe.

    Args:
        init_adaln: factor on the AdaLN scale/shift projections.
        init_adaln_gamma: factor on the AdaLN gate (gamma) projections; tiny values make every block
            start close to the identity (VAR trains d16 with 1e-3, d30 with 1e-5).
        init_head: factor on the logits head weight.
        init_std: std of every Linear/Embedding weight; None means sqrt(1 / (3 C)).
    """
    embed_dim = model.config.embed_dim
    # Small-width rule: std sqrt(1/(3C)) keeps the residual stream's variance O(1) at any width.
    base_std = math.sqrt(1 / (3 * embed_dim))
    init_std = base_std if init_std is None else init_std
    # 1. Every Linear/Embedding: truncated normal weights, zero biases (VAR's uniform starting point).
    init_linear_and_embedding(model, init_std)
    # 2. Start and position vectors always use the width rule, independent of init_std (as in VAR).
    nn.init.trunc_normal_(model.start_pos, std=base_std)
    nn.init.trunc_normal_(model.pos_embed, std=base_std)
    # 3. A small head gives near-uniform initial logits (loss starts near log V).
    model.head.weight.mul_(init_head)
    model.head.bias.zero_()
    # 4. The head's AdaLN starts as a mild modulation around the plain LayerNorm.
    model.head_norm.adaln.linear.weight.mul_(init_adaln)
    model.head_norm.adaln.linear.bias.zero_()
    depth = model.config.depth
    for block in model.blocks:
        # 5. Residual projections scaled by 1/sqrt(2 depth): 2 depth branches add to the stream (GPT-2).
        block.attn.proj.weight.div_(math.sqrt(2 * depth))
        block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
        # 6. Attention starts with zero q/v biases and temperature 4 (cosine logits in [-4, 4]).
        block.attn.q_bias.zero_()
        block.attn.v_bias.zero_()
        if block.attn.l2_norm:
            block.attn.log_temperature.fill_(INITIAL_LOG_TEMPERATURE)
        # 7. AdaLN(-Zero-like): gates (chunks 0, 1) near zero so each block starts as the identity;
        #    scale/shift (chunks 2..5) moderate. Shared AdaLN puts this on the per-block offset instead.
        if block.shared_adaln:
            block.adaln_offset.copy_(torch.randn_like(block.adaln_offset) / math.sqrt(embed_dim))
            block.adaln_offset[:, :, 2:].mul_(init_adaln)
            block.adaln_offset[:, :, :2].mul_(init_adaln_gamma)
        else:
            weight = block.adaln.linear.weight  # (6C, C), rows ordered gamma1, gamma2, scale1, ...
            weight[2 * embed_dim :].mul_(init_adaln)
            weight[: 2 * embed_dim].mul_(init_adaln_gamma)
            block.adaln.linear.bias.zero_()
