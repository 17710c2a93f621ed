"""Multi-head self-attention as in VAR, with optional L2-normalised queries/keys and a pluggable KV store.

The work is split in three steps so variants can reuse them without a rewrite:
``project_qkv`` (x -> per-head q, k, v), :func:`attend` (the one call into the attention kernel: SDPA for a
dense bias, FlexAttention for a ``BlockMask``; every kernel choice lives there) and the output projection.
STAR's rotary position embedding acts on (q, k) between the first two steps. :class:`MultiHeadAttention` holds
what the self-attention here and the cross-attention (``cross_attention.py``, keys/values from the text) share.

References:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    Tian et al., VAR (arXiv 2404.02905); official ``models/basic_var.py`` (``SelfAttention``): q/v biases with
    a fixed zero k bias, cosine attention with a learned per-head temperature capped at 100.
    Dong et al., "Flex Attention" (arXiv 2412.05496); PyTorch ``torch.nn.attention.flex_attention``.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from nextscale.layers.compiling import compile_with_room
from nextscale.layers.rope import apply_rope

if TYPE_CHECKING:
    from nextscale.layers.fused import FusedRegions

# Cap of the learned attention temperature (exp of the log-temperature), as in the official code.
MAX_LOG_TEMPERATURE = math.log(100.0)
INITIAL_LOG_TEMPERATURE = math.log(4.0)


class KeyValueStore(Protocol):
    """What an attention layer needs from an inference cache (see ``nextscale.transformer.kv_cache``)."""

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this call's (B, H, l, Dh) key/value and return all keys/values so far, (B, H, L_seen, Dh)."""
        ...


def cosine_queries(q: torch.Tensor, log_temperature: torch.Tensor) -> torch.Tensor:
    """Unit-normalise q (L2 over Dh) and multiply by exp(min(log_temperature, ln 100)) per head.

    Args:
        q: (B, H, l, Dh).
        log_temperature: (1, H, 1, 1) learned per-head log temperature.
    """
    temperature = log_temperature.clamp_max(MAX_LOG_TEMPERATURE).exp()  # (1, H, 1, 1)
    return F.normalize(q, dim=-1).mul(temperature)


def normalize_qk(q: torch.Tensor, k: torch.Tensor, log_temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine attention: scaled unit queries (:func:`cosine_queries`) and unit keys, each (B, H, l, Dh)."""
    return cosine_queries(q, log_temperature), F.normalize(k, dim=-1)


def region_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype the matrix products after a fused region (``nextscale.layers.fused``) run in: autocast's when it is
    on for x's device (the region casts into it, sparing the separate cast kernel), else None (x's own)."""
    device_type = x.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


@functools.cache
def _compiled_flex_attention():
    """``flex_attention`` compiled, created on the first CUDA call (never at import). Compiled, flex generates one
    fused kernel that skips blocked tiles; eager, it materialises the full score matrix. Each sequence length,
    batch size, dtype and grad mode is a variant of its own (training at two resolutions and sampling the previews
    already meets more than torch's default of 8), so it is compiled with room for more and never falls back to
    eager (``nextscale.layers.compiling``)."""
    return compile_with_room(flex_attention)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_bias: torch.Tensor | BlockMask | None,
    dropout_p: float,
    scale: float,
) -> torch.Tensor:
    """Scaled dot-product attention under a dense bias (SDPA) or a block-sparse mask (FlexAttention).

    Args:
        q: (B, H, l, Dh) queries.
        k, v: (B, H, L_kv, Dh) keys and values.
        attn_bias: additive float bias broadcastable to (B, H, l, L_kv) (0 = allowed, -inf = blocked), None, or
            a FlexAttention ``BlockMask`` of shape (1, 1, l, L_kv) (``transformer/block_mask.py``).
        dropout_p: dropout on the attention weights (pass 0 in evaluation; must be 0 with a BlockMask).
        scale: factor on q.k before the softmax.

    Returns:
        (B, H, l, Dh).
    """
    if not isinstance(attn_bias, BlockMask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout_p, scale=scale)
    if dropout_p > 0:
        raise ValueError(
            f"FlexAttention has no dropout on attention weights (got dropout_p={dropout_p}); "
            "train with attn_dropout=0, or with the dense mask"
        )
    device_type = q.device.type
    if torch.is_autocast_enabled(device_type):
        # Autocast casts SDPA's inputs to its dtype but does not know flex_attention, whose q, k, v must share one
        # dtype (cosine attention leaves q, k in float32 and v in bf16): cast as autocast would for SDPA.
        dtype = torch.get_autocast_dtype(device_type)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    # Compiled on CUDA. On CPU the eager one: correct but forward only (PyTorch 2.13 has no flex backward on CPU),
    # while compiled CPU flex (2.13) fails to build at some lengths and miscomputes when fused after F.normalize.
    # Inside a compiled model the plain function is traced into that model's graph.
    if device_type == "cuda" and not torch.compiler.is_compiling():
        kernel = _compiled_flex_attention()
    else:
        kernel = flex_attention
    return kernel(q, k, v, block_mask=attn_bias, scale=scale)


class MultiHeadAttention(nn.Module):
    """What VAR's self-attention and STAR's cross-attention share: the head split, the zero k bias, the
    softmax scale (cosine attention with a learned per-head temperature, or a fixed scale) and the output
    projection. Subclasses create their input projections and call :meth:`add_scores_and_output` after them,
    so parameters keep the registration order that seeded initialisation and optimizer state rely on.

    Args:
        embed_dim: width C.
        num_heads: H; head_dim = C / H.
        l2_norm: unit-normalise q and k and multiply q by a learned per-head temperature (softmax scale 1);
            otherwise the softmax scale is 0.25 / sqrt(head_dim) (the official non-normalised choice).
        attn_dropout: dropout on the attention weights (training only).
        proj_dropout: dropout after the output projection (training only).
    """

    def __init__(self, embed_dim: int, num_heads: int, l2_norm: bool, attn_dropout: float, proj_dropout: float) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.l2_norm = l2_norm
        self.attn_dropout, self.proj_dropout = attn_dropout, proj_dropout
        # A k bias only adds a per-query constant to the attention logits, which the softmax cancels; this zero
        # vector stands in its place in the fused [q, k, v] bias (the official ``zero_k_bias``).
        self.register_buffer("k_bias", torch.zeros(embed_dim), persistent=False)

    def add_scores_and_output(self) -> None:
        """Create the per-head temperature (with l2_norm) and the output projection; call after the inputs'."""
        if self.l2_norm:
            self.log_temperature = nn.Parameter(torch.full((1, self.num_heads, 1, 1), INITIAL_LOG_TEMPERATURE))
            self.softmax_scale = 1.0
        else:
            self.softmax_scale = 0.25 / math.sqrt(self.head_dim)
        self.proj = nn.Linear(self.embed_dim, self.embed_dim)

    def attend_and_project(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_bias: torch.Tensor | BlockMask | None
    ) -> torch.Tensor:
        """(B, H, l, Dh) queries against (B, H, L_kv, Dh) keys/values (see :func:`attend`) -> (B, l, C)."""
        B, _, l, _ = q.shape
        dropout_p = self.attn_dropout if self.training else 0.0
        out = attend(q, k, v, attn_bias, dropout_p, self.softmax_scale)  # (B, H, l, Dh)
        out = out.transpose(1, 2).reshape(B, l, self.embed_dim)  # (B, l, C)
        return F.dropout(self.proj(out), self.proj_dropout, self.training)


class SelfAttention(MultiHeadAttention):
    """VAR self-attention.

    Args:
        embed_dim: width C.
        num_heads: H; head_dim = C / H.
        layer_idx: this layer's index in a KV store.
        l2_norm, attn_dropout, proj_dropout: see :class:`MultiHeadAttention`.
    """

    # The compiled q/k normalisation used at inference (set by ``FusedKernels.use_fused_kernels``), or None.
    fused: FusedRegions | None = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        layer_idx: int,
        l2_norm: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_heads, l2_norm, attn_dropout, proj_dropout)
        self.layer_idx = layer_idx
        # One matmul for q, k, v; the bias is assembled as [q_bias, k_bias (zero), v_bias].
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.add_scores_and_output()

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, l, C) -> raw q, k, v, each (B, H, l, Dh) (before any rotation or normalisation)."""
        B, l, C = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        if isinstance(self.qkv, nn.Linear):  # the official fused op (float weights)
            qkv = F.linear(x, self.qkv.weight, bias=bias)
        else:  # a replacement layer, e.g. int8 dynamic quantisation (nextscale.sampling.precision)
            qkv = self.qkv(x) + bias
        qkv = qkv.view(B, l, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, l, Dh)
        return q, k, v

    def normalize_qk(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unit-normalise q and k and scale q by the per-head temperature (identity without l2_norm)."""
        if not self.l2_norm:
            return q, k
        if self.fused is not None and not self.training:  # one fused kernel, in the attention's dtype
            return self.fused.normalize_qk(q, k, self.log_temperature, region_dtype(q))
        return normalize_qk(q, k, self.log_temperature)

    def forward(
        self,
        x: torch.Tensor,
        attn_bias: torch.Tensor | None = None,
        kv_cache: KeyValueStore | None = None,
        rope: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend over x (and, with a cache, over every earlier call's tokens).

        Args:
            x: (B, l, C) normalised input.
            attn_bias: float additive mask (1, 1, l, l) for training; None with a cache.
            kv_cache: inference store; this call's k, v are appended and queries see everything stored.
            rope: optional (l, Dh / 2) complex rotations of these positions (STAR's 2-D RoPE), applied to
                q and k after the bias and before the normalisation; cached keys keep their own rotation.

        Returns:
            (B, l, C).
        """
        q, k, v = self.project_qkv(x)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        q, k = self.normalize_qk(q, k)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, H, L_seen, Dh)
        return self.attend_and_project(q, k, v, attn_bias)
