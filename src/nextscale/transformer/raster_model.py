"""The raster-scan autoregressive baseline: next-token prediction over one token map, built from VAR blocks.

Sequence layout (B batch, L = side^2 tokens, C channels, V vocab): position 0 is the start token (class
embedding + a learned start vector), position j >= 1 holds the embedding of token j - 1; position j
predicts token j. Every position adds a learned absolute position embedding. Training runs all positions
under a causal mask; inference runs one position at a time with a :class:`KVCache`. The blocks, the
class embedder with its null class, the AdaLN head and the initialisation are the VAR model's, so a
raster model and a VAR model of the same depth differ only in what they predict at each step: one token
(raster) or a whole scale (VAR). That is the comparison of the VAR paper's Table 3.

References:
    Tian et al., VAR (arXiv 2404.02905), Sec. 3.1 and Table 3 (the AR baseline);
    Esser et al., "Taming Transformers" (raster-scan AR over VQ tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from nextscale.layers.adaln import AdaLNHeadNorm
from nextscale.layers.drop_path import linear_drop_path_rates
from nextscale.transformer.block_mask import BlockCausalTraining
from nextscale.transformer.blocks import BlockCondition, TransformerBlock
from nextscale.transformer.conditioning import ClassCondition, ClassEmbedder
from nextscale.transformer.fused_kernels import FusedKernels
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.model import ClassContext, VARBlocksModel
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.recompute import RecomputedBlocks
from nextscale.transformer.sequence import compute_dtype


def causal_bias(queries: int, keys: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(1, 1, queries, keys) additive mask for the last ``queries`` of ``keys`` positions: 0 where the key
    is not after the query, -inf elsewhere."""
    allowed = torch.ones(queries, keys, dtype=torch.bool, device=device).tril(diagonal=keys - queries)
    return torch.zeros(queries, keys, device=device).masked_fill_(~allowed, float("-inf"))[None, None]


class RasterTransformer(VARBlocksModel, BlockCausalTraining, RecomputedBlocks, FusedKernels, nn.Module):
    """Class-conditional raster-scan transformer.

    Args:
        config: a :class:`RasterConfig` (``RasterConfig.from_depth`` for the VAR shape rule).
    """

    config_class = RasterConfig

    def __init__(self, config: RasterConfig) -> None:
        super().__init__()
        self.config = config
        embed_dim, length = config.embed_dim, config.sequence_length
        self.class_embedder = ClassEmbedder(config.num_classes, embed_dim, config.cond_drop_rate)
        self.start_pos = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.token_embed = nn.Embedding(config.vocab_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.empty(1, length, embed_dim))
        rates = linear_drop_path_rates(config.drop_path_rate, config.depth)
        self.blocks = nn.ModuleList(TransformerBlock(config, i, rates[i]) for i in range(config.depth))
        self.head_norm = AdaLNHeadNorm(embed_dim, embed_dim, config.norm_eps)
        self.head = nn.Linear(embed_dim, config.vocab_size)
        # Plain causal = the level rule with every position its own level (mask built when first needed).
        self.init_training_mask(torch.arange(length, device="cpu"))
        self.init_weights()

    # ------------------------------------------------------------------ conditioning
    def condition_context(self, condition: ClassCondition) -> ClassContext:
        """Embed the labels once for every step of one sampling call."""
        if not isinstance(condition, ClassCondition):
            raise TypeError(
                f"the raster baseline is class-conditional; pass a ClassCondition, not {type(condition).__name__}"
            )
        cond = self.class_embedder.embed(condition.labels)
        return ClassContext(cond=cond, block_condition=BlockCondition(cond).with_memo())

    # ------------------------------------------------------------------ training
    def forward(
        self,
        class_labels: torch.Tensor | ClassCondition,
        tokens: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits of every position.

        Args:
            class_labels: (B,) int64 in 0..num_classes (or a ClassCondition); dropped to the null class with
                probability ``cond_drop_rate`` in training mode.
            tokens: (B, L) int64 token map in raster order (the last token is only a target).
            generator: optional randomness for the condition dropout.

        Returns:
            (B, L, V) float32 logits; position j predicts ``tokens[:, j]``.
        """
        if isinstance(class_labels, ClassCondition):
            class_labels = class_labels.labels
        if not isinstance(class_labels, torch.Tensor) or class_labels.ndim != 1:
            got = tuple(class_labels.shape) if isinstance(class_labels, torch.Tensor) else type(class_labels).__name__
            raise ValueError(f"class_labels must be a (B,) tensor, got {got}")
        self._check_tokens(tokens, class_labels.shape[0])
        device = tokens.device
        with torch.autocast(device_type=device.type, enabled=False):
            cond = self.class_embedder(class_labels, generator)  # (B, C)
            start = cond[:, None] + self.start_pos
            x = torch.cat((start, self.token_embed(tokens[:, :-1])), dim=1) + self.pos_embed  # (B, L, C)
        dtype = compute_dtype(device, x.dtype)
        condition, x = BlockCondition(cond).to(dtype), x.to(dtype)
        length = self.config.sequence_length
        attn_mask = self.training_mask(length, device, dtype)  # (1, 1, L, L) bias or a flex BlockMask
        for block in self.blocks:
            x = self.run_block(block, x, condition, attn_mask)
        return self._logits(x, cond)

    def _check_tokens(self, tokens: torch.Tensor, batch_size: int) -> None:
        """One clear line for a token map the embedding would reject deep inside (or, on a GPU, with a device
        assert that ends the process): the shape, an integer dtype and ids in 0..V-1."""
        length, vocab = self.config.sequence_length, self.config.vocab_size
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a (B, {length}) tensor of token ids, got a {type(tokens).__name__}")
        if tokens.ndim != 2 or tuple(tokens.shape) != (batch_size, length):
            raise ValueError(
                f"tokens must be (B, {length}) for a {self.config.side}x{self.config.side} map with B = "
                f"{batch_size} labels, got {tuple(tokens.shape)}"
            )
        if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens must be integer token ids, got a {tokens.dtype} tensor")
        # The range check reads values back from the device; skip it while torch.compile traces.
        if tokens.numel() and not torch.compiler.is_compiling():
            low, high = (int(value) for value in torch.aminmax(tokens))
            if low < 0 or high >= vocab:
                raise ValueError(
                    f"token ids must lie in 0..{vocab - 1} (the vocabulary), got values in [{low}, {high}]"
                )

    # ------------------------------------------------------------------ inference
    def input_at(self, position: int, context: ClassContext, previous: torch.Tensor | None) -> torch.Tensor:
        """Inputs of positions ``[position, position + l)``.

        Args:
            position: the first position (the cache's length when they run).
            context: from :meth:`condition_context`.
            previous: None at position 0 (the start token); else (B, l) tokens at positions
                ``[position - 1, position - 1 + l)``, the tokens these positions follow.

        Returns:
            (B, l, C).
        """
        length = self.config.sequence_length
        if position == 0:
            if previous is not None:
                raise ValueError("position 0 is the start token; pass previous=None")
            return context.cond[:, None] + self.start_pos + self.pos_embed[:, :1]
        if previous is None or previous.ndim != 2 or not 0 < position <= length - previous.shape[1]:
            got = None if previous is None else tuple(previous.shape)
            raise ValueError(f"position {position} needs previous tokens (B, l) ending by {length - 1}, got {got}")
        end = position + previous.shape[1]
        return self.token_embed(previous) + self.pos_embed[:, position:end]

    def forward_cached(self, x: torch.Tensor, context: ClassContext, kv_cache: KVCache) -> torch.Tensor:
        """Logits of the positions in ``x`` (from :meth:`input_at`), after every position already cached.

        Returns:
            (B, l, V) float32 logits; the cache advances by l.
        """
        if x.ndim != 3 or x.shape[0] != kv_cache.batch_size or x.shape[2] != self.config.embed_dim:
            raise ValueError(f"x must be ({kv_cache.batch_size}, l, {self.config.embed_dim}), got {tuple(x.shape)}")
        # A context of other rows would broadcast into the AdaLN modulations without a word (one row's labels).
        if len(context) != kv_cache.batch_size:
            raise ValueError(
                f"the context holds {len(context)} condition rows but the KV cache {kv_cache.batch_size}; build both "
                "for the same rows (with CFG, the doubled batch)"
            )
        count = x.shape[1]
        # One new position sees everything cached; several new ones (prefilling) need the causal mask.
        bias = None if count == 1 else causal_bias(count, kv_cache.length + count, x.device).to(x.dtype)
        for block in self.blocks:
            x = block(x, context.block_condition, bias, kv_cache)
        kv_cache.advance(count)
        return self._logits(x, context.cond)
