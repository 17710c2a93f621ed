"""The next-scale transformer (VAR stage 2): config, model, KV cache and the official-checkpoint importer."""

from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.official import load_official_var

__all__ = ["KVCache", "ScaleTransformer", "TransformerConfig", "load_official_var"]
