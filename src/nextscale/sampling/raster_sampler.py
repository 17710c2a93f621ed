"""The raster-scan sampling loop: one token per step, with the same knobs and guidance as next-scale sampling.

For every position j: run the transformer on position j's input (earlier positions come from the KV
cache), guide the logits, filter and draw one token, and feed it back as position j + 1's input. The
tokenizer quantizes a single ``side x side`` map (its schedule is ``(side,)``), so the final latent is
``phi(codebook[tokens])``. The CFG weight follows ``SamplingConfig.settings`` with positions in place of
scales: the "linear" ramp grows from 0 at the first token to ``cfg`` at the last, "constant" keeps ``cfg``.

References: Esser et al., "Taming Transformers" (raster-scan sampling); Tian et al., VAR Table 3.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.logits import classifier_free_guidance, filter_logits, sample_tokens
from nextscale.sampling.sampler import SampleOutput
from nextscale.sampling.steps import TransformerSteps
from nextscale.transformer.conditioning import ClassCondition, TextCondition
from nextscale.transformer.raster_model import RasterTransformer


def check_raster_fit(tokenizer: nn.Module, transformer: nn.Module) -> None:
    """Raise unless the tokenizer quantizes exactly the one token map the raster transformer predicts."""
    if not isinstance(transformer, RasterTransformer):  # a VAR or STAR model has no one map to read a side from
        raise TypeError(
            f"the raster sampler needs a RasterTransformer, got {type(transformer).__name__}; sample next-scale "
            "models with ScaleSampler (or Pipeline.from_pretrained)"
        )
    tok, tra = tokenizer.config, transformer.config
    problems = []  # each with its own fix: a schedule is chosen at load time, a codebook size is trained in
    if tuple(tok.scale_sides) != (tra.side,):
        sides = tuple(tok.scale_sides)
        problems.append(
            f"the tokenizer's scale sides are {sides}, the raster model needs ({tra.side},): load the tokenizer "
            f"with scale_sides=({tra.side},) (load_tokenizer(path, ({tra.side},)))"
        )
    if tok.vocab_size != tra.vocab_size:
        problems.append(
            f"vocab sizes differ (tokenizer {tok.vocab_size}, transformer {tra.vocab_size}): use the tokenizer the "
            "transformer was trained with"
        )
    if problems:
        raise ValueError("the tokenizer and the raster transformer do not fit together: " + "; ".join(problems))


class RasterSampler:
    """Samples token maps one token at a time and decodes them with a single-scale tokenizer."""

    def __init__(self, tokenizer: nn.Module, transformer: nn.Module) -> None:
        check_raster_fit(tokenizer, transformer)
        self.tokenizer, self.transformer = tokenizer, transformer
        self.steps = TransformerSteps(transformer)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def draw_labels(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """``batch_size`` labels drawn uniformly from the classes (as the next-scale sampler does)."""
        num_classes = self.transformer.config.num_classes
        uniform = torch.full((1, num_classes), 1.0 / num_classes, dtype=torch.float32, device=self.device)
        return torch.multinomial(uniform, num_samples=batch_size, replacement=True, generator=generator).reshape(-1)

    def class_condition(self, class_labels: torch.Tensor | Sequence[int]) -> ClassCondition:
        # ClassCondition checks the range: 0..num_classes, the last being the null class (unconditional samples)
        return ClassCondition.of(class_labels, self.transformer.config.null_class_id, self.device)

    @torch.no_grad()
    def sample(
        self,
        condition: ClassCondition | torch.Tensor | Sequence[int] | None = None,
        *,
        batch_size: int | None = None,
        config: SamplingConfig | None = None,
        generator: torch.Generator | None = None,
        constraint: object | None = None,
        mask_generator: torch.Generator | None = None,
    ) -> SampleOutput:
        """Sample B token maps in raster order and their final latent.

        Takes what :meth:`ScaleSampler.sample` takes, the arguments after ``condition`` by keyword (as every caller
        passes them), so the two loops are called alike; a raster model refuses what it cannot do.

        Args:
            condition: a :class:`ClassCondition`, class labels (B,), or None to draw ``batch_size`` labels from
                ``generator``.
            batch_size: number of samples when ``condition`` is None.
            config: sampling knobs (default: CFG ramp with cfg 1.5 over positions, no filters); smoothing and masked
                sampling are refused.
            generator: source of every random draw (None: torch's global generator).
            constraint: editing's per-scale hook; refused (anything but None).
            mask_generator: the order noise of masked sampling, which is refused; unused.
        Returns:
            SampleOutput with tokens (B, side^2), f_hat (B, code_dim, side, side) and the labels used.
        """
        config = config or SamplingConfig()
        if config.smooth:
            raise ValueError(
                "smooth sampling mixes code vectors per scale; the raster baseline has no such mode: sample without "
                "smooth (--smooth)"
            )
        if config.masked_sampling:
            raise ValueError(
                "masked sampling is STAR's way of drawing a scale; the raster baseline has no scales: sample without "
                "masked_sampling (--masked-sampling)"
            )
        if constraint is not None:
            raise ValueError("editing teacher-forces known tokens scale by scale; the raster baseline does not edit")
        if condition is None:
            if batch_size is None or batch_size < 1:
                raise ValueError("give class_labels, or batch_size >= 1 to draw random labels")
            condition = self.draw_labels(batch_size, generator)
        if isinstance(condition, TextCondition):
            raise TypeError("the raster baseline is class-conditional; pass class labels, not a TextCondition")
        if not isinstance(condition, ClassCondition):
            condition = self.class_condition(condition)
        condition = condition.to(self.device)
        transformer, length = self.transformer, self.transformer.config.sequence_length
        batch, guided = len(condition), config.uses_guidance(length)
        rows = condition.with_unconditional() if guided else condition
        context, kv_cache = self.steps.begin(rows, self.device)
        x = transformer.input_at(0, context, None)
        tokens = []
        for position in range(length):
            settings = config.settings(position, length)
            logits = self.steps.logits(x, context, kv_cache)  # (B or 2B, 1, V)
            if guided:
                logits = classifier_free_guidance(logits[:batch], logits[batch:], settings.cfg_weight)
            logits = filter_logits(logits, settings.top_k, settings.top_p, settings.temperature)
            token = sample_tokens(logits, generator)[:, :, 0]  # (B, 1)
            tokens.append(token)
            if position + 1 < length:
                x = transformer.input_at(position + 1, context, token.repeat(2, 1) if guided else token)
        tokens_BL = torch.cat(tokens, dim=1)
        f_hat = self.tokenizer.quantizer.indices_to_fhat([tokens_BL])
        return SampleOutput(tokens=tokens_BL, f_hat=f_hat, class_labels=condition.labels)

    @torch.no_grad()
    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Final latent -> images in [0, 1]."""
        return self.tokenizer.decode_fhat(f_hat).float().add(1).div(2)
