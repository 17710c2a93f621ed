"""KVCache: static buffers that behave exactly like concatenation caching."""

import pytest
import torch

from nextscale.presets import tiny
from nextscale.transformer import KVCache, ScaleTransformer
from nextscale.transformer.conditioning import ClassCondition


class ConcatCache:
    """The official style: keep growing tensors by torch.cat (reference behaviour)."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.length = 0
        self.batch_size = None

    def update(self, layer_idx, key, value):
        if self.keys[layer_idx] is not None:
            key = torch.cat((self.keys[layer_idx], key), dim=2)
            value = torch.cat((self.values[layer_idx], value), dim=2)
        self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value

    def advance(self, num_tokens):
        self.length += num_tokens


def test_static_cache_equals_concatenation_cache():
    torch.manual_seed(0)
    _, config = tiny()
    model = ScaleTransformer(config).eval()
    context = model.condition_context(ClassCondition(torch.tensor([1, 4, 10]), config.null_class_id))
    latents = [None] + [torch.randn(3, n, config.code_dim) for n in model.schedule.token_counts[1:]]
    static = model.new_kv_cache(3)
    reference = ConcatCache(config.depth)
    reference.batch_size = 3
    with torch.no_grad():
        for k, latent in enumerate(latents):
            x = model.scale_input(k, context, latent)
            ours = model.forward_cached(x, context, static)
            # Same blocks, driven by the reference cache.
            h = x
            for block in model.blocks:
                h = block(h, context.block_condition, None, reference)
            reference.advance(h.shape[1])
            torch.testing.assert_close(ours, model._logits(h, context.cond), rtol=0, atol=0)
    for layer in range(config.depth):
        torch.testing.assert_close(static.keys[layer], reference.keys[layer], rtol=0, atol=0)
        torch.testing.assert_close(static.values[layer], reference.values[layer], rtol=0, atol=0)


def test_cache_pointer_reset_and_errors():
    cache = KVCache(num_layers=2, batch_size=2, num_heads=1, max_length=5, head_dim=3)
    key = torch.randn(2, 1, 4, 3)
    keys, values = cache.update(0, key, key + 1)
    assert keys.shape == (2, 1, 4, 3) and cache.length == 0
    cache.advance(4)
    assert cache.length == 4
    with pytest.raises(ValueError, match="overflow"):
        cache.update(0, key, key)
    with pytest.raises(ValueError, match="advance"):
        cache.advance(2)
    cache.reset()
    assert cache.length == 0
    with pytest.raises(ValueError, match="new_kv_cache"):
        cache.update(0, torch.randn(3, 1, 1, 3), torch.randn(3, 1, 1, 3))
    with pytest.raises(ValueError, match="dtype"):
        cache.update(0, key.double(), key.double())


def test_forward_cached_checks_scale_alignment():
    _, config = tiny()
    model = ScaleTransformer(config).eval()
    cond = model.embed_condition(torch.tensor([0, 1]))
    cache = model.new_kv_cache(2)
    with pytest.raises(ValueError, match="scale 0 expects"):
        model.forward_cached(torch.randn(2, 4, config.embed_dim), cond, cache)
    cache.advance(2)
    with pytest.raises(ValueError, match="not a scale start"):
        model.forward_cached(torch.randn(2, 4, config.embed_dim), cond, cache)
