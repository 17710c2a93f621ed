"""Import (and export) the official FoundationVision/VAR transformer state dicts.

The released files (``var_d16.pth`` ... ``var_d36.pth``) are plain ``state_dict()`` pickles; training
checkpoints (``ar-ckpt-*.pth``), wrapped or prefixed state dicts and ``.safetensors`` files are read too (see
``nextscale.official_files``). Everything about the model is inferred from tensor shapes: depth (number of
blocks), width, heads, classes, vocabulary, code width, shared AdaLN, L2-normalised attention and the scale
schedule. Key names are translated by an explicit table; the three official buffers (level ids, the
block-causal mask and the zero k bias) are checked against what this implementation derives, then dropped.

References:
    Official ``models/var.py`` / ``models/basic_var.py`` (module tree); VAR_REFERENCE.md sections 3, 5 and 6.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import torch

from nextscale.official_files import OfficialState, read_official
from nextscale.pretrained import load_weights_only
from nextscale.scales import SIDES_256, SIDES_512, ScaleSchedule
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.key_table import KeyTable, attention_heads, count_blocks
from nextscale.transformer.model import ScaleTransformer

# (official name, our name); "{i}" is a block index.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("pos_start", "start_pos"),
    ("pos_1LC", "pos_embed"),
    ("word_embed.weight", "word_embed.weight"),
    ("word_embed.bias", "word_embed.bias"),
    ("class_emb.weight", "class_embedder.embedding.weight"),
    ("lvl_embed.weight", "level_embed.weight"),
    ("shared_ada_lin.1.weight", "shared_adaln.linear.weight"),
    ("shared_ada_lin.1.bias", "shared_adaln.linear.bias"),
    ("blocks.{i}.attn.scale_mul_1H11", "blocks.{i}.attn.log_temperature"),
    ("blocks.{i}.attn.q_bias", "blocks.{i}.attn.q_bias"),
    ("blocks.{i}.attn.v_bias", "blocks.{i}.attn.v_bias"),
    ("blocks.{i}.attn.mat_qkv.weight", "blocks.{i}.attn.qkv.weight"),
    ("blocks.{i}.attn.proj.weight", "blocks.{i}.attn.proj.weight"),
    ("blocks.{i}.attn.proj.bias", "blocks.{i}.attn.proj.bias"),
    ("blocks.{i}.ffn.fc1.weight", "blocks.{i}.ffn.fc1.weight"),
    ("blocks.{i}.ffn.fc1.bias", "blocks.{i}.ffn.fc1.bias"),
    ("blocks.{i}.ffn.fc2.weight", "blocks.{i}.ffn.fc2.weight"),
    ("blocks.{i}.ffn.fc2.bias", "blocks.{i}.ffn.fc2.bias"),
    ("blocks.{i}.ada_lin.1.weight", "blocks.{i}.adaln.linear.weight"),
    ("blocks.{i}.ada_lin.1.bias", "blocks.{i}.adaln.linear.bias"),
    ("blocks.{i}.ada_gss", "blocks.{i}.adaln_offset"),
    ("head_nm.ada_lin.1.weight", "head_norm.adaln.linear.weight"),
    ("head_nm.ada_lin.1.bias", "head_norm.adaln.linear.bias"),
    ("head.weight", "head.weight"),
    ("head.bias", "head.bias"),
)
LEVEL_IDS_KEY = "lvl_1L"
MASK_KEY = "attn_bias_for_masking"
ZERO_K_BIAS = re.compile(r"blocks\.(\d+)\.attn\.zero_k_bias")
# Sequence length -> schedule, for files without the level-id buffer.
KNOWN_SCHEDULES = {ScaleSchedule(SIDES_256).total_tokens: SIDES_256, ScaleSchedule(SIDES_512).total_tokens: SIDES_512}
# The official FID settings (VAR README; VAR_REFERENCE.md section 7), recorded as a converted folder's
# recommended sampling. The demo's cfg 4 / top-p 0.95 gives nicer single pictures.
OFFICIAL_SAMPLING = {"cfg": 1.5, "top_k": 900, "top_p": 0.96}


_KEYS = KeyTable(KEY_TABLE, "VAR")


def official_key_to_ours(key: str) -> str:
    """Official parameter name -> ours, e.g. ``blocks.3.ada_lin.1.weight`` -> ``blocks.3.adaln.linear.weight``."""
    return _KEYS.to_ours(key)


def ours_key_to_official(key: str) -> str:
    """Inverse of :func:`official_key_to_ours`."""
    return _KEYS.to_official(key)


def _infer_sides(state: Mapping[str, torch.Tensor], patch_nums: tuple[int, ...] | None) -> tuple[int, ...]:
    sides = _sides_from_weights(state, patch_nums)
    if patch_nums is not None and tuple(patch_nums) != sides:
        raise ValueError(
            f"the trainer state records patch_nums {tuple(patch_nums)} but its weights are for the schedule "
            f"{sides}; the checkpoint is inconsistent"
        )
    return sides


def _sides_from_weights(state: Mapping[str, torch.Tensor], patch_nums: tuple[int, ...] | None) -> tuple[int, ...]:
    if LEVEL_IDS_KEY in state:
        levels = state[LEVEL_IDS_KEY].reshape(-1).long()
        if levels.numel() == 0 or (levels.diff() < 0).any() or levels[0] != 0:
            raise ValueError(f"{LEVEL_IDS_KEY} must list scale indices 0, 0, 1, ... in order")
        sides = []
        for count in torch.bincount(levels).tolist():
            side = math.isqrt(count)
            if side * side != count:
                raise ValueError(f"{LEVEL_IDS_KEY} has a scale of {count} tokens, which is not a square map")
            sides.append(side)
        return tuple(sides)
    total = state["pos_1LC"].shape[1]
    if patch_nums is not None and sum(side * side for side in patch_nums) == total:
        return tuple(patch_nums)
    if total not in KNOWN_SCHEDULES:
        raise ValueError(
            f"cannot infer the scale schedule: no {LEVEL_IDS_KEY} buffer and L = {total} is none of the "
            f"known lengths {sorted(KNOWN_SCHEDULES)}"
        )
    return KNOWN_SCHEDULES[total]


def infer_official_config(
    state: Mapping[str, torch.Tensor], patch_nums: tuple[int, ...] | None = None
) -> TransformerConfig:
    """Read the model shape off an official VAR state dict.

    Args:
        state: official names -> tensors.
        patch_nums: the schedule a trainer state records, if any; it must agree with the weights (and names the
            schedule of a file without the level-id buffer).
    """
    required = (
        "pos_start",
        "pos_1LC",
        "word_embed.weight",
        "class_emb.weight",
        "head.weight",
        "blocks.0.ffn.fc1.weight",
    )
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"not an official VAR transformer state dict: missing {missing}")
    embed_dim = state["pos_start"].shape[-1]
    num_heads, l2_norm = attention_heads(state, embed_dim)
    return TransformerConfig.from_depth(
        count_blocks(state),
        embed_dim=embed_dim,
        num_heads=num_heads,
        mlp_ratio=state["blocks.0.ffn.fc1.weight"].shape[0] / embed_dim,
        num_classes=state["class_emb.weight"].shape[0] - 1,
        vocab_size=state["head.weight"].shape[0],
        code_dim=state["word_embed.weight"].shape[1],
        scale_sides=_infer_sides(state, patch_nums),
        shared_adaln="shared_ada_lin.1.weight" in state,
        attn_l2_norm=l2_norm,
    )


def read_official_var(source: str | os.PathLike | Mapping | OfficialState) -> OfficialState:
    """The VAR state dict of an official file (plain, trainer state, wrapped or prefixed; .pth or .safetensors),
    loaded safely, with what the file records beside it. Another model's file is refused by name."""
    return read_official(source, "VAR", load_weights_only)


def _check_buffer(key: str, value: torch.Tensor, expected: torch.Tensor) -> None:
    if value.shape != expected.shape:
        difference = f"shape {tuple(value.shape)}, expected {tuple(expected.shape)}"
    elif not torch.equal(value.to(expected.dtype), expected):
        difference = f"same shape {tuple(value.shape)}, different values"
    else:
        return
    raise ValueError(
        f"official buffer {key} differs from the one derived from the inferred config ({difference}); the file is "
        "inconsistent or not a VAR checkpoint"
    )


def load_official_var(source: str | os.PathLike | Mapping | OfficialState) -> ScaleTransformer:
    """Build a :class:`ScaleTransformer` from an official VAR checkpoint.

    Args:
        source: a ``var_d*.pth`` file (loaded with ``weights_only=True``) or trainer state, its state dict, or
            what :func:`read_official_var` returned.

    Returns:
        The model on CPU in eval mode, with float32 weights.
    """
    checkpoint = read_official_var(source)
    state = checkpoint.state
    try:  # the messages below name keys; the file they come from is said once, here (--vae or --var?)
        model = ScaleTransformer(infer_official_config(state, checkpoint.patch_nums))
        params = {}
        for key, value in state.items():
            if key == LEVEL_IDS_KEY:
                _check_buffer(key, value, model.level_ids.cpu())
            elif key == MASK_KEY:
                _check_buffer(key, value, model.attn_bias.cpu())
            elif ZERO_K_BIAS.fullmatch(key):
                _check_buffer(key, value, torch.zeros(model.config.embed_dim))
            else:
                params[key] = value
        return _KEYS.load_into(model, params)
    except ValueError as err:
        raise ValueError(f"{checkpoint.source}: {err}") from err


def to_official_state_dict(model: ScaleTransformer) -> dict[str, torch.Tensor]:
    """Our weights under official names, plus the official buffers, loadable by the official ``VAR`` strictly."""
    state = {ours_key_to_official(key): value.detach().cpu().clone() for key, value in model.state_dict().items()}
    state[LEVEL_IDS_KEY] = model.level_ids.detach().cpu().clone()
    state[MASK_KEY] = model.attn_bias.detach().cpu().float().clone()
    for block_idx in range(model.config.depth):
        state[f"blocks.{block_idx}.attn.zero_k_bias"] = torch.zeros(model.config.embed_dim)
    return state
