"""The weight-decay rule reproduces the official VAR name list; AdamW settings; schedule application."""

import re

import pytest
import torch

from nextscale.presets import tiny
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.optim import apply_schedule, build_adamw, split_decay
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.official import ours_key_to_official

# VAR utils/lr_control.py filter_params with train.py's nowd_keys (VAR_REFERENCE.md section 5).
OFFICIAL_NO_DECAY_KEYS = (
    "cls_token",
    "start_token",
    "task_token",
    "cfg_uncond",
    "pos_embed",
    "pos_1LC",
    "pos_start",
    "start_pos",
    "lvl_embed",
    "gamma",
    "beta",
    "ada_gss",
    "moe_bias",
    "scale_mul",
)
# The decayed parameters the reference lists, as patterns over official names.
OFFICIAL_DECAYED = re.compile(
    r"(word_embed\.weight|class_emb\.weight|blocks\.\d+\.attn\.mat_qkv\.weight|"
    r"blocks\.\d+\.attn\.proj\.weight|blocks\.\d+\.ffn\.fc[12]\.weight|"
    r"blocks\.\d+\.ada_lin\.1\.weight|shared_ada_lin\.1\.weight|head_nm\.ada_lin\.1\.weight|"
    r"head\.weight)\Z"
)


def official_decays(name: str, param: torch.Tensor) -> bool:
    return not (param.ndim == 1 or name.endswith("bias") or any(k in name for k in OFFICIAL_NO_DECAY_KEYS))


def check_against_official(model: ScaleTransformer) -> None:
    decay, no_decay = split_decay(model)
    params = dict(model.named_parameters())
    ours = {ours_key_to_official(n) for n in decay}
    official = {ours_key_to_official(n) for n in params if official_decays(ours_key_to_official(n), params[n])}
    assert ours == official
    assert all(OFFICIAL_DECAYED.match(n) for n in ours)
    assert not any(OFFICIAL_DECAYED.match(ours_key_to_official(n)) for n in no_decay)
    assert set(decay) | set(no_decay) == set(params)


def test_decay_rule_matches_official_list():
    _, config = tiny()
    check_against_official(ScaleTransformer(config))


def test_decay_rule_matches_official_list_shared_adaln():
    _, config = tiny()
    shared = TransformerConfig(**{**config.__dict__, "shared_adaln": True})
    model = ScaleTransformer(shared)
    check_against_official(model)
    assert "blocks.0.adaln_offset" in split_decay(model)[1]


def test_decay_rule_on_tokenizer_is_by_structure():
    tok_config, _ = tiny()
    decay, no_decay = split_decay(MultiScaleVQVAE(tok_config))
    assert "post_quant_conv.weight" in decay  # "post" is not a position word
    assert "quantizer.codebook.weight" in decay
    assert all(not n.endswith("bias") for n in decay)
    assert all(".norm" not in n for n in decay)


def test_adamw_groups_and_schedule():
    _, config = tiny()
    model = ScaleTransformer(config)
    optimizer = build_adamw(model, lr=1e-3)
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["eps"] == 1e-8
    decayed, not_decayed = optimizer.param_groups
    assert decayed["decay"] and not not_decayed["decay"]
    lr, wd = apply_schedule(optimizer, 0, 100, 10, "lin0", 0.01, 0.05)
    assert lr == pytest.approx(1e-3 * 0.005) and wd == 0.05
    assert decayed["weight_decay"] == 0.05 and not_decayed["weight_decay"] == 0.0
    apply_schedule(optimizer, 10, 100, 10, "lin0", 0.01, 0.05)
    assert decayed["lr"] == 1e-3 and not_decayed["lr"] == 1e-3
