"""The text-conditioned next-scale transformer (STAR): prompt features + coarser scales -> logits.

Sequence layout as in VAR (B batch, L all tokens, l tokens of one scale, C channels, V vocab, T text
tokens, D text width): position 0 is the start token, ``text_proj(pooled text vector)`` plus a learned
start vector; positions of scale k >= 1 hold ``word_embed`` of the tokenizer's teacher-forcing latent.
Every token gets a level embedding; there is no absolute position table: positions enter the
self-attention through the cross-scale normalised 2-D RoPE (``layers/rope.py``). Every block also
cross-attends to the text hidden states. The text keys/values are projected once per call
(:meth:`TextScaleTransformer.condition_context`) and reused at every scale.

References:
    Ma et al., "STAR: Scale-wise Text-to-image generation via Auto-Regressive representations",
    arXiv 2406.10797; official ``models/var_drop.py`` (``VAR``, ``init_weights``); STAR_REFERENCE.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nextscale.layers.attention import INITIAL_LOG_TEMPERATURE
from nextscale.layers.cross_attention import ContextKeyValues, padding_bias
from nextscale.layers.drop_path import linear_drop_path_rates
from nextscale.layers.rope import normalized_rope_table
from nextscale.transformer.block_mask import BlockCausalTraining
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.fused_kernels import FusedKernels
from nextscale.transformer.init import init_linear_and_embedding
from nextscale.transformer.kv_cache import KVCache
from nextscale.transformer.recompute import RecomputedBlocks
from nextscale.transformer.sequence import cached_scale, compute_dtype, new_kv_cache, teacher_prefix
from nextscale.transformer.text_blocks import TextBlock
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_sampler_head import MaskedSamplerHead, same_scale_bias


@dataclass
class TextContext:
    """What every scale of one call needs from the text: start vectors (B, C), per-block text keys/values,
    the (B, 1, 1, T) padding bias, and the masked-sampler head's start vectors (B, C) when the model has one."""

    start: torch.Tensor
    text: list[ContextKeyValues]
    text_bias: torch.Tensor
    sampler_start: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.start.shape[0]


class TextScaleTransformer(BlockCausalTraining, RecomputedBlocks, FusedKernels, nn.Module):
    """STAR transformer.

    Args:
        config: a :class:`TextTransformerConfig` (build one with ``TextTransformerConfig.from_depth``).
    """

    config_class = TextTransformerConfig

    def __init__(self, config: TextTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.schedule = config.schedule
        embed_dim = config.embed_dim

        self.text_proj = nn.Linear(config.text_dim, embed_dim)
        self.start_pos = nn.Parameter(torch.empty(1, 1, embed_dim))
        self.word_embed = nn.Linear(config.code_dim, embed_dim)
        self.level_embed = nn.Embedding(self.schedule.num_scales, embed_dim)
        rates = linear_drop_path_rates(config.drop_path_rate, config.depth)
        self.blocks = nn.ModuleList(TextBlock(config, i, rates[i]) for i in range(config.depth))
        self.head = nn.Linear(embed_dim, config.vocab_size)
        self.sampler_head = MaskedSamplerHead(config) if config.sampler_head else None

        # Derived from the schedule, so not saved: scale of every position, block-causal mask (dense or flex, built
        # when first needed: see block_mask.py), RoPE table.
        device = self.start_pos.device
        self.register_buffer("level_ids", self.schedule.level_ids("cpu")[None].to(device), persistent=False)
        self.init_training_mask(self.schedule.level_ids("cpu"))
        # Stored as float32 (cos, sin) pairs so that .to(device) moves it like any buffer; _apply keeps it float32.
        self.register_buffer("rope_table", self._float32_rope_table(device), persistent=False)  # (L, Dh/2, 2)
        self.init_weights()

    def _float32_rope_table(self, device: torch.device) -> torch.Tensor:
        """(L, Dh/2, 2) float32 (cos, sin) of every position, computed on the CPU (as the official code does)."""
        config = self.config
        rope = normalized_rope_table(self.schedule.sides, config.head_dim, config.rope_theta, config.rope_norm)
        return torch.view_as_real(rope).to(device)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> TextScaleTransformer:
        # Module casts (.to(torch.bfloat16), .half()) reach every floating buffer. Rounded to bf16 the table's cos and
        # sin are off by up to 2e-3 at every position; the official code keeps RoPE in float32 and so do we: a table
        # the cast took out of float32 is rebuilt, bit for bit, on the device it went to.
        super()._apply(fn, recurse)
        if self.rope_table.dtype != torch.float32:
            self.rope_table = self._float32_rope_table(self.rope_table.device)
        return self

    # ------------------------------------------------------------------ inputs
    def condition_context(self, condition: TextCondition) -> TextContext:
        """Project the text once: start vectors, every block's text keys/values, the padding bias."""
        if not isinstance(condition, TextCondition):
            raise TypeError(
                f"this is a text-conditional (STAR) model; pass a TextCondition, not {type(condition).__name__}"
            )
        if condition.width != self.config.text_dim:
            raise ValueError(
                f"text features have width {condition.width}, but this model expects {self.config.text_dim}; "
                "use the text encoder the model was trained with"
            )
        hidden = condition.hidden.to(self.text_proj.weight.dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            start = self.text_proj(condition.pooled.to(hidden.dtype))  # (B, C)
            sampler_start = (
                None if self.sampler_head is None else self.sampler_head.start(condition.pooled.to(hidden.dtype))
            )
        text = [block.cross_attn.project_context(hidden) for block in self.blocks]
        return TextContext(start, text, padding_bias(condition.mask, hidden.dtype), sampler_start)

    def rope_rows(self, start: int, end: int) -> torch.Tensor:
        """(end - start, Dh/2) complex RoPE rotations of positions [start, end)."""
        return self._rope(start, end)

    def _rope(self, start: int, end: int) -> torch.Tensor:
        return torch.view_as_complex(self.rope_table[start:end].float().contiguous())  # (l, Dh/2)

    def scale_input(self, scale_idx: int, context: TextContext, next_latent: torch.Tensor | None) -> torch.Tensor:
        """The transformer input of one scale at inference.

        Args:
            scale_idx: k in 0..K-1.
            context: from :meth:`condition_context` (only its start vectors are used, at k = 0).
            next_latent: None for k = 0; else (B, side_k^2, code_dim), the tokenizer's next-scale input.

        Returns:
            (B, side_k^2, C).
        """
        if not 0 <= scale_idx < self.schedule.num_scales:
            raise ValueError(f"scale_idx must be in 0..{self.schedule.num_scales - 1}, got {scale_idx}")
        span = self.schedule.scale_slice(scale_idx)
        level = self.level_embed(self.level_ids[:, span])  # (1, l, C)
        if scale_idx == 0:
            if next_latent is not None:
                raise ValueError("scale 0 is the start token; pass next_latent=None")
            return context.start[:, None] + self.start_pos + level  # (B, 1, C)
        count = self.schedule.token_counts[scale_idx]
        if next_latent is None or next_latent.shape[1:] != (count, self.config.code_dim):
            got = None if next_latent is None else tuple(next_latent.shape)
            raise ValueError(
                f"scale {scale_idx} needs next_latent of shape (B, {count}, {self.config.code_dim}), got {got}"
            )
        return self.word_embed(next_latent) + level  # (B, l, C)

    # ------------------------------------------------------------------ outputs
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, l, C) -> (B, l, V) float32 logits, through the parameter-free logit LayerNorm."""
        x = x.float()
        if self.config.logit_norm:
            x = F.layer_norm(x, (self.config.embed_dim,), eps=self.config.norm_eps)
        return self.head(x).float()

    def forward(
        self,
        condition: TextCondition,
        teacher_input: torch.Tensor,
        generator: torch.Generator | None = None,
        keep: torch.Tensor | None = None,
        sampler_codes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits of all tokens (training and evaluation), or of the kept ones (token dropping), or
        the masked-sampler head's logits (training the head).

        Args:
            condition: B prompts' text features; in training mode each is replaced by its (single) null row
                with probability ``config.cond_drop_rate`` when the condition carries one.
            teacher_input: (B, L' - 1, code_dim) teacher-forcing latents (L' a scale boundary, normally L).
            generator: optional randomness for the condition dropout.
            keep: None, or (n,) int64 positions in increasing order (any device): the blocks then run on these
                positions only, each keeping its embedding, level and RoPE rotation, under the block-causal mask
                restricted to them (official ``drop_scale``, ``training/token_dropping.py``). Embedding and head
                are per position, so the result equals the full forward with the dropped keys masked out.
            sampler_codes: None, or (B, n, code_dim) the known code vectors (zero elsewhere) of the n positions from
                ``config.sampler_from_scale`` on (full sequences): the head's logits of those positions are
                returned, every scale at once under its same-scale mask (``training/sampler_head.py``).

        Returns:
            (B, L', V) float32 logits; with ``keep``, (B, n, V) of the kept positions; with ``sampler_codes``,
            (B, n, V) the head's.
        """
        prefix = self._check_teacher_input(condition, teacher_input)
        if self.training and self.config.cond_drop_rate > 0 and condition.negative is not None:
            condition = condition.drop(self.config.cond_drop_rate, generator)
        context = self.condition_context(condition)
        device = teacher_input.device
        with torch.autocast(device_type=device.type, enabled=False):
            start = context.start[:, None] + self.start_pos  # (B, 1, C)
            words = self.word_embed(teacher_input.to(self.word_embed.weight.dtype))  # (B, L' - 1, C)
            x = torch.cat((start, words), dim=1)  # (B, L', C)
            x += self.level_embed(self.level_ids[:, :prefix])
        dtype = compute_dtype(device, x.dtype)
        x = x.to(dtype)
        rope = self._rope(0, prefix)
        if keep is None:
            attn_mask = self.training_mask(prefix, device, dtype)  # (1, 1, L', L') bias or a flex BlockMask
        else:
            keep = self._checked_keep(keep, prefix).to(device)
            x, rope = x[:, keep], rope[keep]  # (B, n, C), (n, Dh/2)
            attn_mask = self.kept_training_mask(keep, dtype)  # (1, 1, n, n) dense, in either mask form
        for block, text in zip(self.blocks, context.text):
            x = self.run_block(block, x, rope, text, context.text_bias, attn_mask)
        if sampler_codes is not None:
            return self._sampler_head_logits(x, context, rope, sampler_codes, keep)
        return self._logits(x)

    def _sampler_head_logits(
        self, hidden: torch.Tensor, context: TextContext, rope: torch.Tensor, codes: torch.Tensor, keep
    ) -> torch.Tensor:
        if self.sampler_head is None or keep is not None:
            raise ValueError("sampler_codes train the masked-sampler head: a model with one, on full sequences")
        start = self.schedule.offsets[self.config.sampler_from_scale]
        if hidden.shape[1] != self.schedule.total_tokens or codes.shape != (
            *hidden.shape[:1],
            hidden.shape[1] - start,
            self.config.code_dim,
        ):
            raise ValueError(
                f"sampler_codes must be (B, {self.schedule.total_tokens - start}, {self.config.code_dim}) for full "
                f"sequences, got {tuple(codes.shape)}"
            )
        levels = self.level_ids[0, start:]  # (n,)
        head_rope = torch.cat((rope[:1], rope[start:]))
        bias = same_scale_bias(levels, hidden.dtype)
        return self.sampler_head(context.sampler_start, hidden[:, start:], codes, levels, head_rope, bias)

    @staticmethod
    def _checked_keep(keep: torch.Tensor, prefix: int) -> torch.Tensor:
        if not isinstance(keep, torch.Tensor) or keep.ndim != 1 or keep.dtype != torch.int64 or keep.numel() == 0:
            raise TypeError("keep must be a non-empty (n,) int64 tensor of positions")
        # The value checks read the positions back (free on the CPU, where the trainer draws them); skipped while
        # torch.compile traces.
        if not torch.compiler.is_compiling():
            if bool((keep[0] < 0) | (keep[-1] >= prefix) | (keep.diff() <= 0).any()):
                raise ValueError(f"keep must hold increasing positions in 0..{prefix - 1}")
        return keep

    def _check_teacher_input(self, condition: TextCondition, teacher_input: torch.Tensor) -> int:
        if not isinstance(condition, TextCondition):
            raise TypeError(
                f"this is a text-conditional (STAR) model; pass a TextCondition, not {type(condition).__name__}"
            )
        return teacher_prefix(self.schedule, teacher_input, self.config.code_dim, len(condition))

    @torch.no_grad()
    def new_kv_cache(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty self-attention cache for ``batch_size`` sequences (with CFG, the doubled batch)."""
        device = self.start_pos.device if device is None else device
        return new_kv_cache(self.config, batch_size, device, self.start_pos.dtype if dtype is None else dtype)

    def forward_cached(self, x: torch.Tensor, context: TextContext, kv_cache: KVCache) -> torch.Tensor:
        """Logits of one scale at inference; earlier scales come from ``kv_cache``.

        Args:
            x: (B, l, C) from :meth:`scale_input` for the scale that starts at ``kv_cache.length``.
            context: from :meth:`condition_context`, with the same B rows.
            kv_cache: from :meth:`new_kv_cache`; advanced by l on return.

        Returns:
            (B, l, V) float32 logits.
        """
        return self.head_logits(self.hidden_cached(x, context, kv_cache))

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, l, C) final hidden states -> (B, l, V) float32 logits (logit LayerNorm, then the head)."""
        return self._logits(hidden)

    def hidden_cached(self, x: torch.Tensor, context: TextContext, kv_cache: KVCache) -> torch.Tensor:
        """:meth:`forward_cached` without the head: the (B, l, C) final hidden states (the masked sampler needs
        them as well as the logits)."""
        scale_idx = cached_scale(self.schedule, kv_cache)
        expected = (kv_cache.batch_size, self.schedule.token_counts[scale_idx], self.config.embed_dim)
        if tuple(x.shape) != expected or len(context) != expected[0]:
            raise ValueError(
                f"scale {scale_idx} expects x {expected} and a context of {expected[0]} rows, "
                f"got {tuple(x.shape)} and {len(context)}"
            )
        rope = self._rope(kv_cache.length, kv_cache.length + x.shape[1])
        for block, text in zip(self.blocks, context.text):
            x = block(x, rope, text, context.text_bias, None, kv_cache)
        kv_cache.advance(x.shape[1])
        return x

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self, init_head: float = 0.02, init_std: float | None = None) -> None:
        """(Re)initialise every parameter, following the official STAR ``init_weights``.

        Args:
            init_head: factor on the logits head weight.
            init_std: std of every Linear/Embedding weight; None means sqrt(1 / (3 C)).
        """
        base_std = math.sqrt(1 / (3 * self.config.embed_dim))
        init_std = base_std if init_std is None else init_std
        # 1. Every Linear/Embedding: truncated normal weights, zero biases.
        init_linear_and_embedding(self, init_std)
        # 2. The start vector uses the width rule, independent of init_std.
        nn.init.trunc_normal_(self.start_pos, std=base_std)
        # 3. A small head gives near-uniform initial logits (loss starts near log V).
        self.head.weight.mul_(init_head)
        self.head.bias.zero_()
        depth = self.config.depth
        for block in self.blocks:
            # 4. Residual projections of self-attention and FFN scaled by 1/sqrt(2 depth) (GPT-2). The official
            #    code leaves the cross-attention projection unscaled; so do we.
            block.attn.proj.weight.div_(math.sqrt(2 * depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            # 5. Zero q/v biases and temperature 4 in both attentions.
            for attention in (block.attn, block.cross_attn):
                attention.q_bias.zero_()
                attention.v_bias.zero_()
                if attention.l2_norm:
                    attention.log_temperature.fill_(INITIAL_LOG_TEMPERATURE)
        if self.sampler_head is not None:
            self.sampler_head.init_weights(init_std)


@torch.no_grad()
def transfer_to_schedule(model: TextScaleTransformer, scale_sides: tuple[int, ...]) -> TextScaleTransformer:
    """The same model on another scale schedule (STAR's resolution transfer: train low, fine-tune high).

    Every weight is kept; the level-embedding table grows to the new number of scales (old rows kept, new
    rows freshly initialised) or shrinks to its first rows. RoPE needs nothing: positions of every scale
    already span the same range.

    Args:
        model: a trained model.
        scale_sides: the new schedule (usually longer, e.g. 64 px (1, 2, 3, 4, 6, 8) -> 128 px (..., 12, 16)).

    Returns:
        A new model (same device and dtype) with ``config.scale_sides == scale_sides``.
    """
    config = dataclasses.replace(model.config, scale_sides=tuple(scale_sides))
    grown = TextScaleTransformer(config).to(device=model.start_pos.device, dtype=model.start_pos.dtype)
    state = model.state_dict()
    grown_state = grown.state_dict()
    for key in ("level_embed.weight", "sampler_head.level_embed.weight"):
        if key not in state:
            continue
        new_levels = grown_state[key].detach().clone()  # (K', C), initialised by init_weights
        keep = min(new_levels.shape[0], state[key].shape[0])
        new_levels[:keep] = state[key][:keep]
        state[key] = new_levels
    grown.load_state_dict(state, strict=True)
    return grown.train(model.training)
