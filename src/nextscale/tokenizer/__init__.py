"""Multi-scale residual VQ-VAE tokenizer (VAR stage 1): images <-> K token maps of growing side."""

from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.official import load_official_vqvae
from nextscale.tokenizer.quantizer import MultiScaleQuantizer
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

__all__ = ["MultiScaleQuantizer", "MultiScaleVQVAE", "TokenizerConfig", "load_official_vqvae"]
