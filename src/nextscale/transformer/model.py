"""The next-scale transformer (VAR stage 2): class label + coarser scales -> logits of every scale's tokens.

Sequence layout (B batch, L all tokens, l tokens of one scale, C channels, V vocab):
position 0 is the start token (class embedding + a learned start vector); positions of scale k >= 1 hold
``word_embed`` of the teacher-forcing latent of scale k (the tokenizer's cumulative reconstruction up to
scale k-1, resized to scale k). Every token also gets a level embedding (its scale index) and an absolute
position embedding. In training all scales run at once under the block-causal mask; at inference one
scale at a time with a :class:`KVCache` (``scale_input`` then ``forward_cached``), with the class
condition (and the shared AdaLN projection) computed once per call (:meth:`ScaleTransformer.condition_context`).

References:
    Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction",
    NeurIPS 2024 (arXiv 2404.02905); official ``models/var.py`` (``VAR.forward``, ``init_weights``).
    nanoGPT ``model.py`` (structure), DiT ``models.py`` (``initialize_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nextscale.layers.adaln import AdaLNHeadNorm, AdaLNModulation
from nextscale.layers.drop_path import linear_drop_path_rates
from nextscale.transformer.block_mask import BlockCausalTraining
from nextscale.transformer.blocks import NUM_MODULATIONS, BlockCondition, TransformerBlock
from nextscale.transformer.conditioning import ClassCondition, ClassEmbedder
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.fused_kernels import FusedKernels
from nextscale.transformer.init import init_var_weights
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.recompute import RecomputedBlocks
from nextscale.transformer.sequence import cached_scale, compute_dtype, new_kv_cache, teacher_prefix


@dataclass
class ClassContext:
    """What every scale of one sampling call needs from the class condition, computed once: the (B, C)
    condition vectors (start token and head AdaLN) and the blocks' condition (with the shared modulation)."""

    cond: torch.Tensor
    block_condition: BlockCondition

    def __len__(self) -> int:
        return self.cond.shape[0]


def _condition_vectors(context: ClassContext | torch.Tensor) -> torch.Tensor:
    """The (B, C) condition of a context, or the condition itself."""
    return context.cond if isinstance(context, ClassContext) else context


class VARBlocksModel:
    """What every class-conditional model built from VAR blocks shares (this one and the raster baseline,
    ``raster_model.py``): the AdaLN logit head, the official VAR initialisation and a KV cache of its shape.
    A subclass has ``config``, ``blocks``, ``start_pos``, ``pos_embed``, ``head_norm`` and ``head``."""

    def _logits(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """(B, l, C) features -> (B, l, V) float32 logits; the head norm sees float32 inputs as in VAR."""
        return self.head(self.head_norm(x.float(), cond).float()).float()

    @torch.no_grad()
    def new_kv_cache(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty cache for ``batch_size`` sequences (with CFG, the doubled batch); defaults follow the model."""
        device = self.pos_embed.device if device is None else device
        return new_kv_cache(self.config, batch_size, device, self.pos_embed.dtype if dtype is None else dtype)

    def init_weights(
        self,
        init_adaln: float = 0.5,
        init_adaln_gamma: float = 1e-5,
        init_head: float = 0.02,
        init_std: float | None = None,
    ) -> None:
        """(Re)initialise every parameter with the official VAR recipe (see :func:`init_var_weights`)."""
        init_var_weights(self, init_adaln, init_adaln_gamma, init_head, init_std)


class ScaleTransformer(VARBlocksModel, BlockCausalTraining, RecomputedBlocks, FusedKernels, nn.Module):
    """VAR transformer.

    Args:
        config: a :class:`TransformerConfig` (build one with ``TransformerConfig.from_depth``).
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = config.schedule
        embed_dim, total_tokens = config.embed_dim, self.schedule.total_tokens

        self.class_embedder = ClassEmbedder(config.num_classes, embed_dim, config.cond_drop_rate)
        self.start_pos = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.word_embed = nn.Linear(config.code_dim, embed_dim)
        self.pos_embed = nn.Parameter(torch.empty(1, total_tokens, embed_dim))
        self.level_embed = nn.Embedding(self.schedule.num_scales, embed_dim)

        self.shared_adaln = AdaLNModulation(embed_dim, embed_dim, NUM_MODULATIONS) if config.shared_adaln else None
        rates = linear_drop_path_rates(config.drop_path_rate, config.depth)
        self.blocks = nn.ModuleList(TransformerBlock(config, i, rates[i]) for i in range(config.depth))

        self.head_norm = AdaLNHeadNorm(embed_dim, embed_dim, config.norm_eps)
        self.head = nn.Linear(embed_dim, config.vocab_size)

        # Derived from the schedule, so not saved: the scale of every position and the block-causal mask (dense
        # or flex, built when first needed: see block_mask.py).
        device = self.pos_embed.device
        level_ids = self.schedule.level_ids("cpu")[None].to(device)  # (1, L)
        self.register_buffer("level_ids", level_ids, persistent=False)
        self.init_training_mask(self.schedule.level_ids("cpu"))
        self.init_weights()

    # ------------------------------------------------------------------ inputs
    def embed_condition(self, class_labels: torch.Tensor) -> torch.Tensor:
        """(B,) labels in 0..num_classes (the last is the null class) -> (B, C) condition; no dropout."""
        return self.class_embedder.embed(class_labels)

    def condition_context(self, condition: ClassCondition) -> ClassContext:
        """Embed the labels (and the shared modulation) once, for all scales of one sampling call."""
        if not isinstance(condition, ClassCondition):
            raise TypeError(
                f"this is a class-conditional (VAR) model; pass a ClassCondition, not {type(condition).__name__}"
            )
        return self._as_context(self.embed_condition(condition.labels))

    def _as_context(self, context: ClassContext | torch.Tensor) -> ClassContext:
        """A ready context, or one built from a (B, C) condition of :meth:`embed_condition`."""
        if isinstance(context, ClassContext):
            return context
        return ClassContext(cond=context, block_condition=self.block_condition(context).with_memo())

    def block_condition(self, cond: torch.Tensor, dtype: torch.dtype | None = None) -> BlockCondition:
        """What every block receives: the condition and, with shared AdaLN, the one shared projection.

        Args:
            cond: (B, C) condition.
            dtype: the blocks' compute dtype in training (the official ``VAR.forward`` casts the condition,
                or the shared modulation, to it); None keeps cond's dtype, as the official sampler does.
        """
        shared = None if self.shared_adaln is None else self.shared_adaln(cond)  # (B, 1, 6, C)
        condition = BlockCondition(cond, shared)
        return condition if dtype is None else condition.to(dtype)

    def _level_and_position(self, start: int, end: int) -> torch.Tensor:
        """Level embedding + absolute position of positions [start, end): (1, end - start, C)."""
        return self.level_embed(self.level_ids[:, start:end]) + self.pos_embed[:, start:end]

    def scale_input(
        self, scale_idx: int, context: ClassContext | torch.Tensor, next_latent: torch.Tensor | None
    ) -> torch.Tensor:
        """The transformer input of one scale at inference.

        Args:
            scale_idx: k in 0..K-1.
            context: from :meth:`condition_context`, or a (B, C) condition from :meth:`embed_condition`
                (only used at k = 0, for the start token).
            next_latent: None for k = 0; else (B, side_k^2, code_dim), the tokenizer's next-scale input
                (cumulative reconstruction resized to side_k), row-major.

        Returns:
            (B, side_k^2, C).
        """
        if not 0 <= scale_idx < self.schedule.num_scales:
            raise ValueError(f"scale_idx must be in 0..{self.schedule.num_scales - 1}, got {scale_idx}")
        span = self.schedule.scale_slice(scale_idx)
        if scale_idx == 0:
            if next_latent is not None:
                raise ValueError("scale 0 is the start token; pass next_latent=None")
            cond = _condition_vectors(context)  # (B, C)
            return cond[:, None] + self.start_pos + self._level_and_position(0, 1)  # (B, 1, C)
        count = self.schedule.token_counts[scale_idx]
        if next_latent is None or next_latent.shape[1:] != (count, self.config.code_dim):
            got = None if next_latent is None else tuple(next_latent.shape)
            raise ValueError(
                f"scale {scale_idx} needs next_latent of shape (B, {count}, {self.config.code_dim}), got {got}"
            )
        return self.word_embed(next_latent) + self._level_and_position(span.start, span.stop)  # (B, l, C)

    # ------------------------------------------------------------------ outputs
    def forward(
        self,
        class_labels: torch.Tensor | ClassCondition,
        teacher_input: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits of all tokens (training and evaluation).

        Args:
            class_labels: (B,) int64 in 0..num_classes (or a ClassCondition); in training mode they are
                dropped to the null class with probability ``config.cond_drop_rate``.
            teacher_input: (B, L' - 1, code_dim) tokenizer teacher-forcing latents of scales 1..k-1, where
                L' = schedule.offsets[k] (L' = L normally; a shorter prefix of whole scales for
                progressive training).
            generator: optional randomness for the condition dropout.

        Returns:
            (B, L', V) float32 logits.
        """
        if isinstance(class_labels, ClassCondition):
            class_labels = class_labels.labels
        prefix = self._check_teacher_input(class_labels, teacher_input)
        device = teacher_input.device
        # Embeddings in full precision (the official code disables autocast here).
        with torch.autocast(device_type=device.type, enabled=False):
            cond = self.class_embedder(class_labels, generator)  # (B, C)
            start = cond[:, None] + self.start_pos  # (B, 1, C)
            words = self.word_embed(teacher_input.to(self.word_embed.weight.dtype))  # (B, L' - 1, C)
            x = torch.cat((start, words), dim=1)  # (B, L', C)
            x += self._level_and_position(0, prefix)
        # Like the official code, the residual stream runs in the autocast dtype during training.
        dtype = compute_dtype(device, x.dtype)
        block_condition = self.block_condition(cond, dtype)
        attn_mask = self.training_mask(prefix, device, dtype)  # (1, 1, L', L') bias or a flex BlockMask
        x = x.to(dtype)
        for block in self.blocks:
            x = self.run_block(block, x, block_condition, attn_mask)
        return self._logits(x, cond)

    def _check_teacher_input(self, class_labels: torch.Tensor, teacher_input: torch.Tensor) -> int:
        """Validate shapes; return L' (number of positions produced)."""
        if class_labels.ndim != 1:
            raise ValueError(f"class_labels must be (B,), got {tuple(class_labels.shape)}")
        return teacher_prefix(self.schedule, teacher_input, self.config.code_dim, class_labels.shape[0])

    def forward_cached(self, x: torch.Tensor, context: ClassContext | torch.Tensor, kv_cache: KVCache) -> torch.Tensor:
        """Logits of one scale at inference; earlier scales come from ``kv_cache``.

        Args:
            x: (B, l, C) from :meth:`scale_input` for the scale that starts at ``kv_cache.length``.
            context: from :meth:`condition_context`, or a (B, C) condition from :meth:`embed_condition`
                (whose shared modulation is then recomputed on every call).
            kv_cache: cache from :meth:`new_kv_cache`; advanced by l on return.

        Returns:
            (B, l, V) float32 logits.
        """
        scale_idx = cached_scale(self.schedule, kv_cache)
        expected = (kv_cache.batch_size, self.schedule.token_counts[scale_idx], self.config.embed_dim)
        cond = _condition_vectors(context)
        if tuple(x.shape) != expected or tuple(cond.shape) != (expected[0], expected[2]):
            raise ValueError(
                f"scale {scale_idx} expects x {expected} and cond {(expected[0], expected[2])}, "
                f"got {tuple(x.shape)} and {tuple(cond.shape)}"
            )
        context = self._as_context(context)
        # No mask: a scale may see all cached (coarser) tokens and all of its own, as in training.
        for block in self.blocks:
            x = block(x, context.block_condition, None, kv_cache)
        kv_cache.advance(x.shape[1])
        return self._logits(x, cond)
