"""Invariants of the reusable layers: drop-path, AdaLN modulation, attention."""

import math

import pytest
import torch

from nextscale.layers import AdaLNHeadNorm, AdaLNModulation, DropPath, SelfAttention, drop_path, modulate


def test_drop_path_is_identity_in_eval_and_per_sample_in_training():
    layer = DropPath(0.5)
    x = torch.ones(64, 3, 4)
    layer.eval()
    assert layer(x) is x
    layer.train()
    torch.manual_seed(0)
    out = layer(x)
    per_sample = out.flatten(1)
    # Each sample is either dropped entirely or kept and rescaled by 1 / keep.
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert drop_path(x, 0.0, training=True) is x
    with pytest.raises(ValueError, match="drop-path rate"):
        DropPath(1.0)


def test_modulate_and_adaln_shapes():
    normed, scale, shift = torch.randn(2, 5, 8), torch.randn(2, 1, 8), torch.randn(2, 1, 8)
    torch.testing.assert_close(modulate(normed, scale, shift), normed * (1 + scale) + shift)
    modulation = AdaLNModulation(cond_dim=6, embed_dim=8, chunks=6)
    assert modulation(torch.randn(3, 6)).shape == (3, 1, 6, 8)
    head_norm = AdaLNHeadNorm(embed_dim=8, cond_dim=6, eps=1e-6)
    torch.nn.init.zeros_(head_norm.adaln.linear.weight)
    torch.nn.init.zeros_(head_norm.adaln.linear.bias)
    x = torch.randn(3, 5, 8)
    # With zero modulation the head norm is a plain parameter-free LayerNorm.
    torch.testing.assert_close(head_norm(x, torch.randn(3, 6)), torch.nn.functional.layer_norm(x, (8,), eps=1e-6))


def _reference_attention(layer: SelfAttention, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Attention written out with explicit softmax, for comparison."""
    B, l, C = x.shape
    H, Dh = layer.num_heads, layer.head_dim
    qkv = x @ layer.qkv.weight.T + torch.cat((layer.q_bias, torch.zeros(C), layer.v_bias))
    q, k, v = qkv.view(B, l, 3, H, Dh).permute(2, 0, 3, 1, 4)
    if layer.l2_norm:
        q = q / q.norm(dim=-1, keepdim=True) * layer.log_temperature.clamp_max(math.log(100)).exp()
        k = k / k.norm(dim=-1, keepdim=True)
    scores = q @ k.transpose(-1, -2) * layer.softmax_scale
    if bias is not None:
        scores = scores + bias
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, l, C)
    return layer.proj(out)


@pytest.mark.parametrize("l2_norm", [True, False])
def test_self_attention_matches_explicit_softmax(l2_norm):
    torch.manual_seed(0)
    layer = SelfAttention(embed_dim=16, num_heads=2, layer_idx=0, l2_norm=l2_norm).eval()
    with torch.no_grad():
        layer.q_bias.normal_()
        layer.v_bias.normal_()
        if l2_norm:
            layer.log_temperature.copy_(torch.tensor([1.0, 7.0]).view(1, 2, 1, 1))  # 7 > ln 100: clamped
    assert layer.softmax_scale == (1.0 if l2_norm else 0.25 / math.sqrt(8))
    x = torch.randn(2, 5, 16)
    bias = torch.zeros(1, 1, 5, 5).masked_fill_(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(layer(x, bias), _reference_attention(layer, x, bias), atol=1e-5, rtol=1e-5)
    # The k bias is a fixed zero buffer, not a parameter, and is not saved.
    assert "k_bias" not in layer.state_dict() and "k_bias" not in dict(layer.named_parameters())
