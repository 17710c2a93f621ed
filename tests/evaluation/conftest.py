"""Shared fixtures of the evaluation tests."""

import pytest
import torch


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A random 32 px, 10-class, grayscale pipeline (scales 1, 2, 4, 8)."""
    from nextscale.sampling.pipeline import Pipeline
    from nextscale.tokenizer.config import TokenizerConfig
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.config import TransformerConfig
    from nextscale.transformer.model import ScaleTransformer

    torch.manual_seed(0)
    sides = (1, 2, 4, 8)
    tokenizer = MultiScaleVQVAE(
        TokenizerConfig(
            vocab_size=32,
            code_dim=4,
            base_channels=32,
            channel_multipliers=(1, 1, 1),
            num_res_blocks=1,
            in_channels=1,
            num_phi=2,
            scale_sides=sides,
        )
    )
    transformer = ScaleTransformer(
        TransformerConfig.from_depth(
            1, embed_dim=32, num_heads=1, num_classes=10, vocab_size=32, code_dim=4, scale_sides=sides
        )
    )
    path = tmp_path_factory.mktemp("eval-model") / "pipe"
    Pipeline(tokenizer, transformer).save_pretrained(path)
    return path
