"""Tiny random models that several test folders build: a 32 px gray class pipeline and a STAR config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_config import TextTransformerConfig


def gray_32px_pipeline(path: Path) -> Path:
    """Save a random 32 px, 10-class, grayscale pipeline (scales 1, 2, 4, 8: the size the bundled classifier's
    features read) at ``path``."""
    torch.manual_seed(0)
    sides = (1, 2, 4, 8)
    config = TokenizerConfig(
        vocab_size=32, code_dim=4, base_channels=32, channel_multipliers=(1, 1, 1), num_res_blocks=1, num_phi=2
    )
    tokenizer = MultiScaleVQVAE(dataclasses.replace(config, in_channels=1, scale_sides=sides))
    transformer = ScaleTransformer(
        TransformerConfig.from_depth(
            1, embed_dim=32, num_heads=1, num_classes=10, vocab_size=32, code_dim=4, scale_sides=sides
        )
    )
    Pipeline(tokenizer, transformer).save_pretrained(path)
    return path


def tiny_text_config(
    text_dim: int, tokenizer_config: TokenizerConfig | None = None, embed_dim: int = 32
) -> TextTransformerConfig:
    """A depth-1, one-head STAR config on the tokens of ``tokenizer_config`` (default: the tiny preset's)."""
    tokens = tokenizer_config or tiny()[0]
    return TextTransformerConfig.from_depth(
        1,
        embed_dim=embed_dim,
        num_heads=1,
        vocab_size=tokens.vocab_size,
        code_dim=tokens.code_dim,
        scale_sides=tokens.scale_sides,
        text_dim=text_dim,
    )
