"""Tiny models the sampling tests share (random weights, CPU, milliseconds); imported by name."""

import torch

from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer


def tiny_class_pipeline() -> Pipeline:
    """The tiny preset from seed 0, with O(1) gates and head so that every token matters."""
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer = ScaleTransformer(transformer_config)
    transformer.init_weights(init_adaln_gamma=1.0, init_head=1.0)
    return Pipeline(MultiScaleVQVAE(tokenizer_config), transformer)


def tiny_text_transformer(text_dim: int = 384) -> TextScaleTransformer:
    """A depth-2 STAR model on the tiny preset's tokens, with non-trivial logits."""
    _, class_config = tiny()
    config = TextTransformerConfig.from_depth(
        2,
        embed_dim=64,
        num_heads=2,
        vocab_size=class_config.vocab_size,
        code_dim=class_config.code_dim,
        scale_sides=class_config.scale_sides,
        text_dim=text_dim,
    )
    model = TextScaleTransformer(config)
    model.init_weights(init_head=1.0)
    return model
