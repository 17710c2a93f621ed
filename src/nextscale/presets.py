"""Named configurations: ``tiny`` for tests and CI, the official VAR and STAR sizes, and the bundled models.

Each preset returns a (TokenizerConfig, TransformerConfig or TextTransformerConfig) pair whose scale
schedules agree. Text presets (``star-*``, ``fashion-scenes``) build STAR models; their ``text_dim``
follows the text encoder at training time.
"""

from __future__ import annotations

import dataclasses

from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.text_config import TextTransformerConfig

TINY_SIDES = (1, 2, 4)


def tiny() -> tuple[TokenizerConfig, TransformerConfig]:
    """Seconds on a CPU: 16 px images, 4x downsampling, scales (1, 2, 4), 2 blocks of width 64."""
    tokenizer = TokenizerConfig(
        vocab_size=64,
        code_dim=8,
        base_channels=32,
        channel_multipliers=(1, 1, 2),
        num_res_blocks=1,
        num_phi=2,
        scale_sides=TINY_SIDES,
    )
    transformer = TransformerConfig.from_depth(
        2,
        embed_dim=64,
        num_heads=2,
        num_classes=10,
        vocab_size=64,
        code_dim=8,
        scale_sides=TINY_SIDES,
    )
    return tokenizer, transformer


def var(depth: int) -> tuple[TokenizerConfig, TransformerConfig]:
    """Official VAR shapes: d16/d20/d24/d30 at 256 px; d36 at 512 px with shared AdaLN."""
    if depth == 36:
        return TokenizerConfig(scale_sides=SIDES_512), TransformerConfig.from_depth(
            36, scale_sides=SIDES_512, shared_adaln=True
        )
    if depth not in (16, 20, 24, 30):
        raise ValueError(f"official VAR depths are 16, 20, 24, 30 (256 px) and 36 (512 px), got {depth}")
    return TokenizerConfig(), TransformerConfig.from_depth(depth, scale_sides=SIDES_256)


FASHION_SIDES = (1, 2, 3, 4, 6, 8)


def fashion_mnist() -> tuple[TokenizerConfig, TransformerConfig]:
    """The bundled demo model: 32x32 grayscale Fashion-MNIST, 4x downsampling to an 8x8 latent,
    six scales (130 tokens), 512 codes of 16 channels, and a depth-4 transformer (width 256, 4 heads)."""
    tokenizer = TokenizerConfig(
        vocab_size=512,
        code_dim=16,
        base_channels=32,
        channel_multipliers=(1, 2, 2),
        num_res_blocks=1,
        in_channels=1,
        scale_sides=FASHION_SIDES,
    )
    transformer = TransformerConfig.from_depth(
        4,
        num_classes=10,
        vocab_size=512,
        code_dim=16,
        scale_sides=FASHION_SIDES,
    )
    return tokenizer, transformer


def star_tiny() -> tuple[TokenizerConfig, TextTransformerConfig]:
    """The tiny tokenizer with a 2-block text model of width 64 (text width 384, MiniLM's)."""
    tokenizer, class_model = tiny()
    transformer = TextTransformerConfig.from_depth(
        2,
        embed_dim=64,
        num_heads=2,
        vocab_size=class_model.vocab_size,
        code_dim=class_model.code_dim,
        scale_sides=TINY_SIDES,
        text_dim=384,
    )
    return tokenizer, transformer


def star(depth: int, image_size: int = 256) -> tuple[TokenizerConfig, TextTransformerConfig]:
    """Official STAR shapes: d16 (256 px) and d30 (256 / 512 / 1024 px) with a CLIP text width of 1024."""
    sides = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}[image_size]
    return TokenizerConfig(scale_sides=sides), TextTransformerConfig.from_depth(depth, scale_sides=sides, text_dim=1024)


# 64x64 scenes of four 32x32 quadrants; the 2x2 scale is one token per quadrant.
SCENES_SIDES = (1, 2, 4, 8, 16)


def fashion_scenes() -> tuple[TokenizerConfig, TextTransformerConfig]:
    """The bundled text-to-image model: the demo tokenizer (4x downsampling) on 64x64 Fashion-MNIST scenes,
    scales (1, 2, 4, 8, 16) (341 tokens), and a depth-4 text model (width 256, 4 heads) on MiniLM features."""
    tokenizer, class_model = fashion_mnist()
    tokenizer = dataclasses.replace(tokenizer, scale_sides=SCENES_SIDES)
    transformer = TextTransformerConfig.from_depth(
        4, vocab_size=class_model.vocab_size, code_dim=class_model.code_dim, scale_sides=SCENES_SIDES, text_dim=384
    )
    return tokenizer, transformer


PRESETS = {
    "tiny": tiny,
    "star-tiny": star_tiny,
    "fashion-mnist": fashion_mnist,
    "fashion-scenes": fashion_scenes,
    "star-d16": lambda: star(16),
    "star-d30": lambda: star(30),
    "star-d30-512": lambda: star(30, 512),
    "star-d30-1024": lambda: star(30, 1024),
    "var-d16": lambda: var(16),
    "var-d20": lambda: var(20),
    "var-d24": lambda: var(24),
    "var-d30": lambda: var(30),
    "var-d36": lambda: var(36),
}


def get_preset(name: str) -> tuple[TokenizerConfig, TransformerConfig | TextTransformerConfig]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
