"""The one next-scale sampling loop, shared by plain sampling and editing.

For every scale k: run the transformer on scale k's input tokens (earlier scales come from the KV
cache), guide the logits, filter and draw tokens, turn them into code vectors, let an optional
constraint overwrite some of them (editing), and let the tokenizer's quantizer fold them into the
running f-hat and produce scale k+1's input. The condition (class labels or text features) owns its
unconditional rows, and the transformer turns it into a per-call context, so class (VAR) and text (STAR)
models share this loop. The order of random draws matches the official VAR
sampler (optional label draw, then one multinomial per scale, then the Gumbel draw in smooth mode), so
the same seed and a CPU generator give the official tokens.

References:
    Tian et al. 2024, Algorithm 2 and Sec. 3.2; VAR ``models/var.py`` (autoregressive_infer_cfg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from nextscale.sampling.cuda_graphs import CudaGraphSteps
from nextscale.sampling.guidance import SamplingConfig, ScaleSettings, scale_ratio
from nextscale.sampling.logits import classifier_free_guidance, filter_logits, gumbel_softmax, sample_tokens, smooth_tau
from nextscale.sampling.masked_sampling import sample_masked_scale
from nextscale.sampling.steps import TransformerSteps
from nextscale.transformer.conditioning import ClassCondition, Condition, TextCondition
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_model import TextScaleTransformer


class TokenConstraint(Protocol):
    """A per-scale hook that may overwrite sampled tokens and their code vectors (used by editing)."""

    def __call__(
        self, scale_idx: int, tokens_Bl: torch.Tensor, codes_BlC: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class SampleOutput:
    """tokens: (B, L) int64, scales concatenated coarse to fine; f_hat: (B, code_dim, h, w) final latent;
    class_labels: (B,) the labels used (drawn ones included); None for text models."""

    tokens: torch.Tensor
    f_hat: torch.Tensor
    class_labels: torch.Tensor | None


def check_components_fit(tokenizer: nn.Module, transformer: nn.Module) -> None:
    """One place that says whether a tokenizer and a transformer can work together."""
    tok, tra = tokenizer.config, transformer.config
    problems = []
    if tuple(tok.scale_sides) != tuple(tra.scale_sides):
        problems.append(
            f"scale sides differ (tokenizer {tuple(tok.scale_sides)}, transformer {tuple(tra.scale_sides)})"
        )
    if tok.vocab_size != tra.vocab_size:
        problems.append(f"vocab sizes differ (tokenizer {tok.vocab_size}, transformer {tra.vocab_size})")
    if tok.code_dim != tra.code_dim:
        problems.append(f"code dims differ (tokenizer {tok.code_dim}, transformer {tra.code_dim})")
    if problems:
        raise ValueError(
            "the tokenizer and the transformer do not fit together: "
            + "; ".join(problems)
            + ". Use the tokenizer the transformer was trained with."
        )


class ScaleSampler:
    """Samples token maps scale by scale with a transformer and folds them into images with a tokenizer.

    With ``cuda_graphs=True`` (GPU only) the transformer's steps replay as captured CUDA graphs, one per scale
    (:class:`CudaGraphSteps`); the default runs them eagerly.
    """

    def __init__(self, tokenizer: nn.Module, transformer: nn.Module, *, cuda_graphs: bool = False) -> None:
        if isinstance(transformer, RasterTransformer):  # one map, sampled token by token
            raise TypeError(
                f"ScaleSampler samples next-scale transformers, not a {type(transformer).__name__}; use its own "
                "sampler (RasterSampler for the raster baseline), or Pipeline.from_pretrained, which picks it"
            )
        check_components_fit(tokenizer, transformer)
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.schedule = transformer.config.schedule
        self.steps = CudaGraphSteps(transformer) if cuda_graphs else TransformerSteps(transformer)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def is_text_conditional(self) -> bool:
        return isinstance(self.transformer, TextScaleTransformer)

    def draw_labels(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Uniform random class labels, drawn exactly like the official sampler (first draw of the seed)."""
        num_classes = self.transformer.config.num_classes
        uniform = torch.full((1, num_classes), 1.0 / num_classes, dtype=torch.float32, device=self.device)
        return torch.multinomial(uniform, num_samples=batch_size, replacement=True, generator=generator).reshape(
            batch_size
        )

    def check_labels(self, class_labels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Class labels as a (B,) int64 tensor on the model's device; a clear error when out of range."""
        if self.is_text_conditional:
            raise ValueError("this model is text-conditional; pass prompts (or text features), not class labels")
        return ClassCondition.of(class_labels, self.transformer.config.null_class_id, self.device).labels

    def class_condition(self, class_labels: torch.Tensor | Sequence[int]) -> ClassCondition:
        return ClassCondition(self.check_labels(class_labels), self.transformer.config.null_class_id)

    @torch.no_grad()
    def sample(
        self,
        condition: Condition | torch.Tensor | Sequence[int] | None = None,
        batch_size: int | None = None,
        config: SamplingConfig | None = None,
        generator: torch.Generator | None = None,
        constraint: TokenConstraint | None = None,
        mask_generator: torch.Generator | None = None,
    ) -> SampleOutput:
        """Sample B token sequences and the final latent f-hat.

        Args:
            condition: a :class:`ClassCondition` or :class:`TextCondition` (B rows; with guidance a text
                condition must carry its negative / null rows), class labels (B,), or None to draw
                ``batch_size`` labels from ``generator`` (class models).
            batch_size: number of samples when ``condition`` is None.
            config: sampling knobs (default: official CFG ramp with cfg 1.5, no filters).
            generator: source of every random draw (None: torch's global generator).
            constraint: optional per-scale hook that overwrites tokens and code vectors; one with a
                ``known(scale_idx)`` method (an edit's ``KeepTokensConstraint``) also gives masked sampling the
                tokens it keeps, decided before its steps.
            mask_generator: with ``config.masked_sampling``, the source of the masked steps' order noise (None:
                ``generator``; see ``masked_sampling.py``).
        Returns:
            SampleOutput with tokens (B, L), f_hat (B, code_dim, h, w) and, for class models, the labels.
        """
        config = config or SamplingConfig()
        if constraint is not None and not callable(constraint):  # e.g. an ``ImageEdit``, which a pipeline encodes
            raise TypeError(
                f"constraint must be a per-scale hook (scale_idx, tokens, codes) -> (tokens, codes), got "
                f"{type(constraint).__name__}; an ImageEdit becomes one with .encoded(tokenizer, sides, device)"
            )
        if condition is None:
            if self.is_text_conditional:
                raise ValueError("this model is text-conditional; give a prompt (there are no labels to draw)")
            if batch_size is None or batch_size < 1:
                raise ValueError("give class_labels, or batch_size >= 1 to draw random labels")
            condition = self.class_condition(self.draw_labels(batch_size, generator))
        elif not isinstance(condition, (ClassCondition, TextCondition)):
            condition = self.class_condition(condition)
        condition = condition.to(self.device)
        transformer, quantizer = self.transformer, self.tokenizer.quantizer
        sides, num_scales = self.schedule.sides, self.schedule.num_scales
        batch, code_dim = len(condition), self.tokenizer.config.code_dim
        guided = config.uses_guidance(num_scales)
        masked_from = self.masked_sampling_start(config)

        # CFG doubles the batch: rows [0, B) are conditional, rows [B, 2B) unconditional (null or negative).
        rows = condition.with_unconditional() if guided else condition
        context, kv_cache = self.steps.begin(rows, self.device)
        x = transformer.scale_input(0, context, None)
        codebook = quantizer.codebook.weight  # (V, code_dim)
        f_hat = torch.zeros(batch, code_dim, sides[-1], sides[-1], device=self.device, dtype=codebook.dtype)
        tokens = []
        for scale_idx, side in enumerate(sides):
            settings = config.settings(scale_idx, num_scales)
            if scale_idx >= masked_from:
                tokens_Bl, codes_BlC = sample_masked_scale(
                    transformer,
                    self.steps.hidden(x, context, kv_cache),
                    context,
                    scale_idx,
                    batch,
                    settings,
                    config.full_cfg(scale_idx),
                    config.masked_plan,
                    codebook,
                    generator,
                    mask_generator,
                    known=constraint.known(scale_idx) if hasattr(constraint, "known") else None,
                )
            else:
                logits = self.steps.logits(x, context, kv_cache)  # (B or 2B, l, V)
                if guided:
                    logits = classifier_free_guidance(logits[:batch], logits[batch:], settings.cfg_weight)
                tokens_Bl, codes_BlC = self.draw(logits, scale_idx, settings, config, codebook, generator)
            if constraint is not None:
                tokens_Bl, codes_BlC = constraint(scale_idx, tokens_Bl, codes_BlC)
            tokens.append(tokens_Bl)
            h_BChw = codes_BlC.transpose(1, 2).reshape(batch, code_dim, side, side)
            f_hat, next_BChw = quantizer.next_input(scale_idx, f_hat, h_BChw)
            if scale_idx + 1 < num_scales:
                next_latent = next_BChw.view(batch, code_dim, -1).transpose(1, 2)  # (B, l_next, code_dim)
                x = transformer.scale_input(scale_idx + 1, context, next_latent)
                if guided:
                    x = x.repeat(2, 1, 1)  # both halves see the same sampled tokens
        labels = condition.labels if isinstance(condition, ClassCondition) else None
        return SampleOutput(tokens=torch.cat(tokens, dim=1), f_hat=f_hat, class_labels=labels)

    def draw(
        self,
        logits: torch.Tensor,
        scale_idx: int,
        settings: ScaleSettings,
        config: SamplingConfig,
        codebook: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One scale's (B, l) tokens and (B, l, code_dim) code vectors from its guided (B, l, V) logits."""
        num_scales = self.schedule.num_scales
        if config.smooth and self.is_text_conditional:
            # STAR's smooth mode: the Gumbel mixture of the unfiltered logits, no top-k/top-p and no
            # multinomial draw (one exponential_ per scale); the token is the mixture's heaviest code.
            logits = filter_logits(logits, None, None, settings.temperature)
            ratio = scale_ratio(scale_idx, num_scales)
            weights_BlV = gumbel_softmax(logits.mul(1 + ratio), smooth_tau(ratio), generator)
            return weights_BlV.argmax(dim=-1), weights_BlV @ codebook.unsqueeze(0)
        logits = filter_logits(logits, settings.top_k, settings.top_p, settings.temperature)
        tokens_Bl = sample_tokens(logits, generator)[:, :, 0]
        if config.smooth:  # VAR's smooth mode: the multinomial draw, then the mixture of the filtered logits
            ratio = scale_ratio(scale_idx, num_scales)
            weights_BlV = gumbel_softmax(logits.mul(1 + ratio), smooth_tau(ratio), generator)
            return tokens_Bl, weights_BlV @ codebook.unsqueeze(0)
        return tokens_Bl, self.tokenizer.quantizer.lookup(tokens_Bl)

    def masked_sampling_start(self, config: SamplingConfig) -> int | float:
        """The first scale sampled by masked sampling (infinity when it is off); refuses it for models without the
        masked-sampler head and for steps that cannot return hidden states (CUDA graphs)."""
        if not config.masked_sampling:
            return math.inf
        transformer_config = self.transformer.config
        if not getattr(transformer_config, "sampler_head", False):
            raise ValueError(
                "masked sampling needs a STAR model with the masked-sampler head (the official star-1024-sampler "
                "checkpoint); sample this model without it"
            )
        if not hasattr(self.steps, "hidden"):
            raise ValueError("masked sampling runs eagerly; sample without CUDA graphs")
        return transformer_config.sampler_from_scale

    @torch.no_grad()
    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Final latent -> images in [0, 1], (B, 3, H, W), like the official sampler's return value."""
        return self.tokenizer.decode_fhat(f_hat).float().add(1).div(2)
