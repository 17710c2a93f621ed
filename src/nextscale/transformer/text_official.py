"""Import the official STAR (Davinci-XLab/STAR-T2I) transformer checkpoints.

Released files are trainer states: the model's state dict sits at ``["trainer"]["var_wo_ddp"]`` (plain
state dicts are accepted too). The model shape is read off tensor shapes: depth, width, heads, MLP
ratio, vocabulary, code width, text width and the number of scales. What the weights cannot tell —
which 10-scale schedule (256 or 512 px) and the RoPE base / range — comes from the caller (defaults: the
released 256-px settings, theta 10000, N 64). ``class_emb`` is stored by the official code but unused, and
the ``zero_k_bias`` buffers must be zero; both are checked and dropped. Released weights were trained with
the batch-0 cross-attention behaviour, so it is switched on unless the caller asks for per-sample.

References: STAR_REFERENCE.md sections 2, 4 and 10; official ``models/var_drop.py``, ``models/basic_var.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from nextscale.pretrained import load_weights_only
from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.transformer.key_table import KeyTable, attention_heads, count_blocks, unwrap_trainer_state
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

# (official name, our name); "{i}" is a block index.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("pos_start", "start_pos"),
    ("word_embed.weight", "word_embed.weight"),
    ("word_embed.bias", "word_embed.bias"),
    ("lvl_embed.weight", "level_embed.weight"),
    ("blocks.{i}.attn.scale_mul_1H11", "blocks.{i}.attn.log_temperature"),
    ("blocks.{i}.attn.q_bias", "blocks.{i}.attn.q_bias"),
    ("blocks.{i}.attn.v_bias", "blocks.{i}.attn.v_bias"),
    ("blocks.{i}.attn.mat_qkv.weight", "blocks.{i}.attn.qkv.weight"),
    ("blocks.{i}.attn.proj.weight", "blocks.{i}.attn.proj.weight"),
    ("blocks.{i}.attn.proj.bias", "blocks.{i}.attn.proj.bias"),
    ("blocks.{i}.cross_attn.scale_mul_1H11", "blocks.{i}.cross_attn.log_temperature"),
    ("blocks.{i}.cross_attn.q_bias", "blocks.{i}.cross_attn.q_bias"),
    ("blocks.{i}.cross_attn.v_bias", "blocks.{i}.cross_attn.v_bias"),
    ("blocks.{i}.cross_attn.mat_kv.weight", "blocks.{i}.cross_attn.kv.weight"),
    ("blocks.{i}.cross_attn.mat_q.weight", "blocks.{i}.cross_attn.q.weight"),
    ("blocks.{i}.cross_attn.proj.weight", "blocks.{i}.cross_attn.proj.weight"),
    ("blocks.{i}.cross_attn.proj.bias", "blocks.{i}.cross_attn.proj.bias"),
    ("blocks.{i}.ffn.fc1.weight", "blocks.{i}.ffn.fc1.weight"),
    ("blocks.{i}.ffn.fc1.bias", "blocks.{i}.ffn.fc1.bias"),
    ("blocks.{i}.ffn.fc2.weight", "blocks.{i}.ffn.fc2.weight"),
    ("blocks.{i}.ffn.fc2.bias", "blocks.{i}.ffn.fc2.bias"),
    ("head_logits.weight", "head.weight"),
    ("head_logits.bias", "head.bias"),
    ("encoder_proj.weight", "text_proj.weight"),
    ("encoder_proj.bias", "text_proj.bias"),
)
UNUSED_KEY = "class_emb.weight"
ZERO_K_BIAS = re.compile(r"blocks\.(\d+)\.(attn|cross_attn)\.zero_k_bias")
SAMPLER_KEYS = ("pos_start_last", "encoder_proj2.weight", "head_proj.weight")
# The released schedules by number of scales; 10 scales is ambiguous (256 or 512 px), 256 px by default.
SCHEDULES = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}


_KEYS = KeyTable(KEY_TABLE, "STAR")


def official_key_to_ours(key: str) -> str:
    """Official name -> ours, e.g. ``blocks.1.cross_attn.mat_kv.weight`` -> ``blocks.1.cross_attn.kv.weight``."""
    return _KEYS.to_ours(key)


def ours_key_to_official(key: str) -> str:
    return _KEYS.to_official(key)


def read_official_star(path_or_state_dict: str | os.PathLike | Mapping) -> Mapping[str, torch.Tensor]:
    """The model state dict of an official STAR file (trainer state or plain state dict), loaded safely."""
    if isinstance(path_or_state_dict, Mapping):
        state = path_or_state_dict
    else:
        state = load_weights_only(path_or_state_dict)
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a STAR checkpoint (a dict), got {type(state).__name__}")
    state = unwrap_trainer_state(state)
    if any(key in state for key in SAMPLER_KEYS):
        raise ValueError(
            "this is the masked-sampler STAR checkpoint (star-1024-sampler); only the plain STAR checkpoints "
            "(star-256, star-512, star-1024) are supported"
        )
    required = ("pos_start", "encoder_proj.weight", "blocks.0.cross_attn.mat_kv.weight", "head_logits.weight")
    missing = [key for key in required if key not in state]
    if missing:
        hint = " (this looks like a VAR checkpoint: use --var)" if "head.weight" in state else ""
        raise ValueError(f"not an official STAR transformer checkpoint: missing {missing}{hint}")
    _KEYS.require_tensors(state)
    return state


def infer_official_star_config(
    state: Mapping[str, torch.Tensor],
    image_size: int | None = None,
    rope_theta: float = 10000.0,
    rope_norm: float = 64.0,
    batch0_cross_attention: bool = True,
) -> TextTransformerConfig:
    """Read the model shape off an official STAR state dict.

    Args:
        state: from :func:`read_official_star`.
        image_size: 256, 512 or 1024 to pick the released schedule; None: 1024 for 14 scales, else 256.
        rope_theta, rope_norm: RoPE settings (not stored in the weights).
        batch0_cross_attention: reproduce the official batch-0 cross-attention (what the weights expect).
    """
    embed_dim = state["pos_start"].shape[-1]
    num_scales = state["lvl_embed.weight"].shape[0]
    if image_size is None:
        image_size = 1024 if num_scales == len(SIDES_1024) else 256
    if image_size not in SCHEDULES:
        raise ValueError(f"image size must be one of {sorted(SCHEDULES)} for official STAR models, got {image_size}")
    sides = SCHEDULES[image_size]
    if len(sides) != num_scales:
        raise ValueError(
            f"the checkpoint has {num_scales} scales, but the {image_size}-px schedule has {len(sides)}; "
            "pass the image size the model was trained at"
        )
    num_heads, l2_norm = attention_heads(state, embed_dim)
    return TextTransformerConfig.from_depth(
        count_blocks(state),
        embed_dim=embed_dim,
        num_heads=num_heads,
        mlp_ratio=state["blocks.0.ffn.fc1.weight"].shape[0] / embed_dim,
        vocab_size=state["head_logits.weight"].shape[0],
        code_dim=state["word_embed.weight"].shape[1],
        scale_sides=sides,
        text_dim=state["encoder_proj.weight"].shape[1],
        attn_l2_norm=l2_norm,
        rope_theta=float(rope_theta),
        rope_norm=float(rope_norm),
        official_batch0_cross_attention=batch0_cross_attention,
    )


def load_official_star(
    path_or_state_dict: str | os.PathLike | Mapping,
    image_size: int | None = None,
    rope_theta: float = 10000.0,
    rope_norm: float = 64.0,
    batch0_cross_attention: bool = True,
) -> TextScaleTransformer:
    """Build a :class:`TextScaleTransformer` from an official STAR checkpoint (CPU, eval mode, float32).

    Args:
        path_or_state_dict: a ``.pth`` trainer state or state dict, loaded with ``weights_only=True``.
        image_size, rope_theta, rope_norm, batch0_cross_attention: see :func:`infer_official_star_config`.
    """
    state = read_official_star(path_or_state_dict)
    config = infer_official_star_config(state, image_size, rope_theta, rope_norm, batch0_cross_attention)
    model = TextScaleTransformer(config)
    params = {}
    for key, value in state.items():
        if ZERO_K_BIAS.fullmatch(key):
            if value.shape != (config.embed_dim,) or value.abs().max() != 0:
                raise ValueError(f"official buffer {key} must be a zero vector of width {config.embed_dim}")
        elif key != UNUSED_KEY:  # the official model creates a class table it never uses
            params[key] = value
    return _KEYS.load_into(model, params)
