"""nextscale: scale-wise autoregressive image generation (VAR next-scale prediction, STAR text-to-image)."""

__version__ = "0.1.0"
