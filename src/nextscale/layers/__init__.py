"""Reusable neural-network layers: attention, adaptive LayerNorm, stochastic depth."""

from nextscale.layers.adaln import AdaLNHeadNorm, AdaLNModulation, modulate
from nextscale.layers.attention import KeyValueStore, SelfAttention, attend
from nextscale.layers.drop_path import DropPath, drop_path

__all__ = [
    "AdaLNHeadNorm",
    "AdaLNModulation",
    "DropPath",
    "KeyValueStore",
    "SelfAttention",
    "attend",
    "drop_path",
    "modulate",
]
