"""STAR's masked sampling of one scale ("Causal-Driven Stable Sampling", official ``w_mask=True``).

Instead of drawing every token of a fine scale at once, the scale's tokens are decided in S steps; step s
decides n_s more positions (the arccos reveal schedule, :func:`reveal_counts`) and keeps every decision made:

1. Draw a token and its probability ("confidence") at every position: from the main model's logits guided with
   the ramped cfg (plan "1024", steps < 5 of scales < 13), otherwise from the masked-sampler head
   (``transformer/text_sampler_head.py``, fed the codes decided so far) guided with the full cfg. Filters
   (top-k, top-p, temperature) as at any scale; one multinomial draw per step from ``generator``.
2. Main-model steps first decide the n_s most confident positions over all positions (decided ones included, so
   fewer may be new).
3. Every step then decides the n_s most confident undecided positions, where the confidence of the first 5
   steps is replaced by uniform noise (random order).

Each newly decided position takes the token drawn at that step. With S steps and the counts summing to the
scale's size, every position is decided at the end.

Random draws, in the official order: per step one discarded ``rand(R, l)`` (the official mask scheduler draws
and ignores it), the multinomial draw, then (steps < 5) ``rand(B, l)`` for the noise. The official code takes
the discarded and the noise draws from torch's global generator and the multinomial from its own seeded one; here
they come from ``mask_generator`` (default: the call's ``generator``), so a seed reproduces an image.

References: STAR_REFERENCE.md section 9; official ``models/var_drop.py`` (``autoregressive_infer_cfg``, the
``w_mask`` branch) and ``utils/mask_utils.py`` (``Scheduler``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nextscale.sampling.guidance import ScaleSettings
from nextscale.sampling.logits import classifier_free_guidance, filter_logits, sample_tokens_with_probability

# The official constants: noise replaces the confidence in the first steps; plan "1024" draws from the main model
# in its first steps at scales below 13 and takes 15 steps above scale 12 (8 elsewhere).
NOISE_STEPS = 5
MAIN_MODEL_STEPS = 5
MAIN_MODEL_BELOW_SCALE = 13
LONG_PLAN_ABOVE_SCALE = 12
STEPS, LONG_STEPS = 8, 15


@dataclass(frozen=True)
class StepPlan:
    """How one scale is sampled: the number of steps and how many first steps use the main model's logits."""

    num_steps: int
    main_model_steps: int


def step_plan(plan: str, scale_idx: int) -> StepPlan:
    """The official step plan of ``scale_idx`` (see ``SamplingConfig.masked_plan``)."""
    if plan == "1024":
        num_steps = LONG_STEPS if scale_idx > LONG_PLAN_ABOVE_SCALE else STEPS
        return StepPlan(num_steps, MAIN_MODEL_STEPS if scale_idx < MAIN_MODEL_BELOW_SCALE else 0)
    return StepPlan(STEPS, 0)


def reveal_counts(num_steps: int, num_tokens: int) -> list[int]:
    """How many positions each step decides: the arccos schedule of the official ``Scheduler``.

    With r = linspace(1, 0, S) and v = arccos(r) / (pi / 2): n_s = round(v_s / sum(v) * N) (float32, ties to
    even), zeros raised to 1, the last adjusted so the counts sum to N. Example: 8 steps of a 21 x 21 map give
    [1, 31, 44, 55, 65, 74, 82, 89].
    """
    share = torch.arccos(torch.linspace(1, 0, num_steps)) / (math.pi * 0.5)
    counts = (share / share.sum() * num_tokens).round().int()
    counts[counts == 0] = 1
    counts[-1] += num_tokens - counts.sum()
    if counts[-1] < 0:
        raise ValueError(
            f"masked sampling decides at least one token per step, and {num_steps} steps do not fit a scale of "
            f"{num_tokens} tokens; start masked sampling at a finer scale (sampler_from_scale)"
        )
    return counts.tolist()


def sample_masked_scale(
    transformer: torch.nn.Module,
    hidden: torch.Tensor,
    context: object,
    scale_idx: int,
    batch: int,
    settings: ScaleSettings,
    full_cfg: float,
    plan: str,
    codebook: torch.Tensor,
    generator: torch.Generator | None,
    mask_generator: torch.Generator | None,
    known: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and code vectors of one scale by masked sampling.

    Args:
        transformer: a STAR ``TextScaleTransformer`` with a ``sampler_head``.
        hidden: (R, l, C) its final hidden states of this scale (R = 2B with guidance: conditional rows first).
        context: the call's ``TextContext`` (its ``sampler_start`` rows feed the head).
        scale_idx: the scale.
        batch: B, the number of images (R = B without guidance).
        settings: this scale's settings (ramped cfg weight, filters).
        full_cfg: the unramped guidance strength the head's logits are guided with.
        plan: "1024" or "head-only" (see :func:`step_plan`).
        codebook: (V, code_dim) the tokenizer's code vectors.
        generator: source of the multinomial draws (None: torch's global generator).
        mask_generator: source of the order noise and the discarded draws (None: ``generator``).
        known: an edit's (B, l) tokens and (B, l) bool keep mask of this scale (``KeepTokensConstraint.known``):
            the kept positions start decided with the image's tokens, so every step's head sees them (not draws
            that the edit would replace afterwards), and only the other positions are sampled.

    Returns:
        (B, l) int64 tokens and their (B, l, code_dim) code vectors.
    """
    rows, length = hidden.shape[0], hidden.shape[1]
    head = transformer.sampler_head
    span = transformer.schedule.scale_slice(scale_idx)
    rope = torch.cat((transformer.rope_rows(0, 1), transformer.rope_rows(span.start, span.stop)))
    levels = torch.full((length,), scale_idx, dtype=torch.long, device=hidden.device)
    noise_generator = generator if mask_generator is None else mask_generator
    device = hidden.device
    tokens = torch.zeros(batch, length, dtype=torch.long, device=device)
    codes = torch.zeros(batch, length, codebook.shape[1], dtype=codebook.dtype, device=device)
    decided = torch.zeros(batch, length, device=device)  # 1.0 where decided (the official float mask)
    if known is not None:  # never re-decided: _decide takes only positions that were undecided
        known_tokens, keep = (tensor.to(device).expand(batch, length) for tensor in known)
        tokens = torch.where(keep, known_tokens, tokens)
        codes = torch.where(keep[..., None], codebook[known_tokens], codes)
        decided.masked_fill_(keep, 1.0)
    step_settings = _Guide(settings, rows, batch)
    main_logits = None
    schedule = step_plan(plan, scale_idx)
    for step, count in enumerate(reveal_counts(schedule.num_steps, length)):
        _uniform((rows, length), noise_generator, device)  # the official scheduler's discarded mask draw
        if step < schedule.main_model_steps:
            if main_logits is None:  # the same hidden states at every step: one head evaluation
                main_logits = transformer.head_logits(hidden)
            drawn, confidence = step_settings.draw(main_logits, settings.cfg_weight, generator)
            _decide(decided, confidence, count, drawn, tokens, codes, codebook)
        else:
            logits = head(context.sampler_start, hidden, codes * decided[..., None], levels, rope)
            drawn, confidence = step_settings.draw(logits, full_cfg, generator)
        if step < NOISE_STEPS:
            confidence = _uniform(confidence.shape, noise_generator, device)
        _decide(decided, confidence * (1 - decided), count, drawn, tokens, codes, codebook)
    return tokens, codes


class _Guide:
    """Guidance and filtering of one step's logits, then the draw with its confidence."""

    def __init__(self, settings: ScaleSettings, rows: int, batch: int) -> None:
        self.settings, self.rows, self.batch = settings, rows, batch

    def draw(
        self, logits: torch.Tensor, weight: float, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rows != self.batch:
            logits = classifier_free_guidance(logits[: self.batch], logits[self.batch :], weight)
        logits = filter_logits(logits, self.settings.top_k, self.settings.top_p, self.settings.temperature)
        return sample_tokens_with_probability(logits, generator)


def _decide(
    decided: torch.Tensor,
    confidence: torch.Tensor,
    count: int,
    drawn: torch.Tensor,
    tokens: torch.Tensor,
    codes: torch.Tensor,
    codebook: torch.Tensor,
) -> None:
    """Mark the ``count`` most confident positions of each row decided; the newly decided take this step's draw."""
    chosen = confidence.topk(count, dim=-1).indices  # (B, count)
    before = decided.clone()
    decided.scatter_(1, chosen, 1.0)
    new = decided.bool() & ~before.bool()
    tokens[new] = drawn[new]
    codes[new] = codebook[drawn[new]]


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn where ``generator`` lives (the CPU for torch's global one), on ``device``."""
    source = torch.device("cpu") if generator is None else generator.device
    return torch.rand(shape, generator=generator, device=source).to(device)
