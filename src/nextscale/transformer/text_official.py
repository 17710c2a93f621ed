"""Import the official STAR (Davinci-XLab/STAR-T2I) transformer checkpoints.

Released files are trainer states: the model's state dict sits at ``["trainer"]["var_wo_ddp"]`` (plain,
wrapped or prefixed state dicts and ``.safetensors`` files are accepted too, see ``nextscale.official_files``).
The model shape is read off tensor shapes: depth, width, heads, MLP ratio, vocabulary, code width, text width
and the number of scales. The schedule is the one the trainer state records (``trainer.config.patch_nums``)
when it records one; otherwise 14 scales are 1024 px and 10 scales are 256 px unless the caller says 512
(the weights cannot tell the two apart). The RoPE base / range come from the caller (released: theta 10000,
N 64). ``class_emb`` is stored by the official code but unused, and
the ``zero_k_bias`` buffers must be zero; both are checked and dropped. Released weights were trained with
the batch-0 cross-attention behaviour, so it is switched on unless the caller asks for per-sample. The
star-1024-sampler file adds the masked-sampler head (``transformer/text_sampler_head.py``), read when present.

References: STAR_REFERENCE.md sections 2, 4 and 10; official ``models/var_drop.py``, ``models/basic_var.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from nextscale.official_files import OfficialState, read_official
from nextscale.pretrained import load_weights_only
from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.transformer.key_table import KeyTable, attention_heads, count_blocks
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
    # The masked-sampler head (star-1024-sampler only).
    ("pos_start_last", "sampler_head.start_pos"),
    ("word_embed_head.weight", "sampler_head.word_embed.weight"),
    ("word_embed_head.bias", "sampler_head.word_embed.bias"),
    ("lvl_embed_2.weight", "sampler_head.level_embed.weight"),
    ("encoder_proj2.weight", "sampler_head.text_proj.weight"),
    ("encoder_proj2.bias", "sampler_head.text_proj.bias"),
    ("head_proj.weight", "sampler_head.fuse.weight"),
    ("head_proj.bias", "sampler_head.fuse.bias"),
    ("feat_extract_blocks.{i}.attn.scale_mul_1H11", "sampler_head.blocks.{i}.attn.log_temperature"),
    ("feat_extract_blocks.{i}.attn.q_bias", "sampler_head.blocks.{i}.attn.q_bias"),
    ("feat_extract_blocks.{i}.attn.v_bias", "sampler_head.blocks.{i}.attn.v_bias"),
    ("feat_extract_blocks.{i}.attn.mat_qkv.weight", "sampler_head.blocks.{i}.attn.qkv.weight"),
    ("feat_extract_blocks.{i}.attn.proj.weight", "sampler_head.blocks.{i}.attn.proj.weight"),
    ("feat_extract_blocks.{i}.attn.proj.bias", "sampler_head.blocks.{i}.attn.proj.bias"),
    ("feat_extract_blocks.{i}.ffn.fc1.weight", "sampler_head.blocks.{i}.ffn.fc1.weight"),
    ("feat_extract_blocks.{i}.ffn.fc1.bias", "sampler_head.blocks.{i}.ffn.fc1.bias"),
    ("feat_extract_blocks.{i}.ffn.fc2.weight", "sampler_head.blocks.{i}.ffn.fc2.weight"),
    ("feat_extract_blocks.{i}.ffn.fc2.bias", "sampler_head.blocks.{i}.ffn.fc2.bias"),
    ("head_logits2.weight", "sampler_head.head.weight"),
    ("head_logits2.bias", "sampler_head.head.bias"),
)
# The entries the model shape is read from: a file without one of them cannot be converted.
REQUIRED = (
    "pos_start",
    "word_embed.weight",
    "lvl_embed.weight",
    "encoder_proj.weight",
    "blocks.0.cross_attn.mat_kv.weight",
    "blocks.0.ffn.fc1.weight",
    "head_logits.weight",
)
UNUSED_KEY = "class_emb.weight"
ZERO_K_BIAS = re.compile(r"(?:feat_extract_)?blocks\.(\d+)\.(attn|cross_attn)\.zero_k_bias")
SAMPLER_KEY = "pos_start_last"  # present only in the star-1024-sampler file
SAMPLER_BLOCK = re.compile(r"feat_extract_blocks\.(\d+)\.")
# The first scale of masked sampling: the official sample_from_idx, 9 in every script and config (not stored).
OFFICIAL_SAMPLER_FROM_SCALE = 9
# The released schedules by number of scales; 10 scales is ambiguous (256 or 512 px), 256 px by default.
SCHEDULES = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}
# The official sample.py settings (STAR_REFERENCE.md section 7), recorded as a converted folder's
# recommended sampling.
OFFICIAL_SAMPLING = {"cfg": 4.5, "top_k": 600, "top_p": 0.8}
# The sampler checkpoint's settings in the official gradio demo: cfg 4.0, top-k 600, top-p 0.8, masked sampling on
# (the README's MJHQ evaluation differs only in top-k 4096, i.e. no top-k filter).
OFFICIAL_SAMPLER_SAMPLING = {"cfg": 4.0, "top_k": 600, "top_p": 0.8, "masked_sampling": True}


_KEYS = KeyTable(KEY_TABLE, "STAR")


def official_key_to_ours(key: str) -> str:
    """Official name -> ours, e.g. ``blocks.1.cross_attn.mat_kv.weight`` -> ``blocks.1.cross_attn.kv.weight``."""
    return _KEYS.to_ours(key)


def ours_key_to_official(key: str) -> str:
    return _KEYS.to_official(key)


def read_official_star(source: str | os.PathLike | Mapping | OfficialState) -> OfficialState:
    """The STAR state dict of an official file (trainer state, plain, wrapped or prefixed; .pth or
    .safetensors), loaded safely, with what the file records beside it. Another model's file is refused by name."""
    if isinstance(source, OfficialState):
        return source
    checkpoint = read_official(source, "STAR", load_weights_only)
    _check_required(checkpoint.state, checkpoint.source)
    return checkpoint


def _check_required(state: Mapping, source: str) -> None:
    """Refuse a state dict without the entries the model shape is read from (a damaged or truncated file)."""
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise ValueError(f"{source} is not an official STAR transformer checkpoint: missing {missing}")


def assumed_image_size(checkpoint: OfficialState, image_size: int | None) -> int | None:
    """The image size taken by default when neither the caller nor the file settles an ambiguous schedule
    (10 scales: 256 or 512 px), so a converter can say so; None when nothing was assumed."""
    num_scales = checkpoint.state["lvl_embed.weight"].shape[0]
    recorded = checkpoint.patch_nums is not None or checkpoint.resos is not None
    if image_size is None and not recorded and len(SIDES_256) == len(SIDES_512) == num_scales:
        return 256
    return None


def infer_official_star_config(
    state: Mapping[str, torch.Tensor],
    image_size: int | None = None,
    rope_theta: float = 10000.0,
    rope_norm: float = 64.0,
    batch0_cross_attention: bool = True,
    patch_nums: tuple[int, ...] | None = None,
    resos: tuple[int, ...] | None = None,
    sampler_from_scale: int = OFFICIAL_SAMPLER_FROM_SCALE,
) -> TextTransformerConfig:
    """Read the model shape off an official STAR state dict.

    Args:
        state: the ``state`` of :func:`read_official_star`.
        image_size: 256, 512 or 1024 to pick the released schedule; None: the recorded one, else 1024 for 14
            scales and 256 for 10. A size that contradicts the recorded schedule is refused.
        rope_theta, rope_norm: RoPE settings (not stored in the weights).
        batch0_cross_attention: reproduce the official batch-0 cross-attention (what the weights expect).
        patch_nums, resos: the scale sides and image sides the trainer state records, if any.
        sampler_from_scale: the first scale of masked sampling, for the star-1024-sampler file (not stored).
    """
    _check_required(state, "the state dict")
    embed_dim = state["pos_start"].shape[-1]
    num_scales = state["lvl_embed.weight"].shape[0]
    sides = _schedule(num_scales, image_size, patch_nums, resos)
    num_heads, l2_norm = attention_heads(state, embed_dim)
    sampler = {}
    if SAMPLER_KEY in state:
        depth = len({int(m.group(1)) for key in state if (m := SAMPLER_BLOCK.match(key))})
        sampler = dict(sampler_head=True, sampler_from_scale=sampler_from_scale, sampler_depth=depth)
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
        **sampler,
    )


def _schedule(
    num_scales: int, image_size: int | None, patch_nums: tuple[int, ...] | None, resos: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The scale sides: the recorded ones, else the released schedule of the image size (see the docstring)."""
    if image_size is not None and image_size not in SCHEDULES:
        raise ValueError(f"image size must be one of {sorted(SCHEDULES)} for official STAR models, got {image_size}")
    if patch_nums is None and resos is None:
        return _released(image_size or (1024 if num_scales == len(SIDES_1024) else 256), num_scales)
    recorded = "; ".join(
        f"{name} {tuple(value)}" for name, value in (("patch_nums", patch_nums), ("resos", resos)) if value is not None
    )
    if patch_nums is not None:
        sides = tuple(patch_nums)
        if len(sides) != num_scales:
            raise ValueError(
                f"the trainer state records {recorded} ({len(sides)} scales) but the weights have {num_scales} "
                "scales; the checkpoint is inconsistent"
            )
    elif resos[-1] in SCHEDULES:  # resolutions only: the last one names the released schedule
        sides = _released(resos[-1], num_scales)
    else:
        raise ValueError(
            f"the trainer state records {recorded} but no patch_nums, and {resos[-1]} px is not a released STAR "
            f"size {sorted(SCHEDULES)}; the checkpoint cannot be converted as it is"
        )
    if image_size is not None and (SCHEDULES[image_size] != sides or (resos is not None and resos[-1] != image_size)):
        raise ValueError(
            f"image size {image_size} (--image-size) contradicts the schedule the trainer state records "
            f"({recorded}); leave the image size out to use the recorded one"
        )
    return sides


def _released(image_size: int, num_scales: int) -> tuple[int, ...]:
    sides = SCHEDULES[image_size]
    if len(sides) != num_scales:
        raise ValueError(
            f"the checkpoint has {num_scales} scales, but the {image_size}-px schedule has {len(sides)}; "
            "pass the image size the model was trained at"
        )
    return sides


def load_official_star(
    source: str | os.PathLike | Mapping | OfficialState,
    image_size: int | None = None,
    rope_theta: float = 10000.0,
    rope_norm: float = 64.0,
    batch0_cross_attention: bool = True,
    sampler_from_scale: int = OFFICIAL_SAMPLER_FROM_SCALE,
) -> TextScaleTransformer:
    """Build a :class:`TextScaleTransformer` from an official STAR checkpoint (CPU, eval mode, float32).

    Args:
        source: a ``.pth`` trainer state or state dict (loaded with ``weights_only=True``), a loaded state dict,
            or what :func:`read_official_star` returned.
        image_size, rope_theta, rope_norm, batch0_cross_attention, sampler_from_scale: see
            :func:`infer_official_star_config`.
    """
    checkpoint = read_official_star(source)
    config = infer_official_star_config(
        checkpoint.state,
        image_size,
        rope_theta,
        rope_norm,
        batch0_cross_attention,
        patch_nums=checkpoint.patch_nums,
        resos=checkpoint.resos,
        sampler_from_scale=sampler_from_scale,
    )
    model = TextScaleTransformer(config)
    params = {}
    try:  # the messages below name keys; the file they come from is said once, here (--vae or --star?)
        for key, value in checkpoint.state.items():
            if ZERO_K_BIAS.fullmatch(key):
                if value.shape != (config.embed_dim,) or value.abs().max() != 0:
                    raise ValueError(f"official buffer {key} must be a zero vector of width {config.embed_dim}")
            elif key != UNUSED_KEY:  # the official model creates a class table it never uses
                params[key] = value
        return _KEYS.load_into(model, params)
    except ValueError as err:
        raise ValueError(f"{checkpoint.source}: {err}") from err
