"""Per-scale sampling settings: the CFG ramp and optional per-scale overrides.

The official VAR sampler guides on logits with a weight that grows linearly with the scale index,
``w_k = cfg * k / (K - 1)``: no guidance at the 1x1 scale, full ``cfg`` at the last. ``SamplingConfig``
holds the user's knobs and answers, for each scale, the settings the sampler applies there.

Example: cfg=1.5 with K=10 scales gives weights 0, 0.167, 0.333, ..., 1.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nextscale.sampling.logits import check_sampling_args

CFG_SCHEDULES = ("linear", "constant")
# Step plans of STAR's masked sampling (official ``sample_version``), see ``masked_sampling.py``.
MASKED_PLANS = ("1024", "head-only")


@dataclass(frozen=True)
class ScaleSettings:
    """What the sampler applies at one scale."""

    cfg_weight: float
    top_k: int | None
    top_p: float | None
    temperature: float


@dataclass(frozen=True)
class ScaleOverride:
    """Replace some settings at one scale (``None`` fields keep the global value)."""

    scale_idx: int
    cfg: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class SamplingConfig:
    """The sampling knobs of the papers. ``None`` switches a filter off.

    Attributes:
        cfg: classifier-free guidance strength (0 = off); the weight at scale k follows ``cfg_schedule``.
        cfg_schedule: "linear" (official: cfg * k / (K - 1)) or "constant" (cfg at every scale).
        top_k: keep the k most likely tokens (ties kept), or None. Any integer >= 1 is accepted: a top_k at or
            above the vocabulary size is clamped to it and keeps every token, as in the official sampler
            (``top_k=900`` on a 512-token vocabulary filters nothing; no error, no warning).
        top_p: nucleus mass in (0, 1], or None.
        temperature: logits are divided by it (1.0: unchanged, the official behaviour).
        smooth: the official "more smooth" mode, a Gumbel-softmax mixture of code vectors instead of
            the sampled code. Class models (VAR) still filter and draw the tokens, which are returned; text
            models (STAR) mix the unfiltered logits (top_k and top_p unused) and draw no tokens, so the
            returned token is each mixture's heaviest code (a Gumbel-max draw from the scaled logits).
        overrides: per-scale replacements of cfg / top_k / top_p / temperature.
        masked_sampling: STAR's masked sampling at the scales from ``sampler_from_scale`` on (official ``w_mask``;
            needs a model with the masked-sampler head, the star-1024-sampler checkpoint). Those scales ignore
            ``smooth``, as the official sampler does.
        masked_plan: "1024" (official ``sample_version='1024'``: 8 steps per scale, 15 at scales above 12; the
            first 5 steps of scales below 13 draw from the main model's logits) or "head-only" (any other
            official version: 8 steps, all from the head).
    """

    cfg: float = 1.5
    cfg_schedule: str = "linear"
    top_k: int | None = None
    top_p: float | None = None
    temperature: float = 1.0
    smooth: bool = False
    overrides: tuple[ScaleOverride, ...] = field(default_factory=tuple)
    masked_sampling: bool = False
    masked_plan: str = "1024"

    def __post_init__(self) -> None:
        check_sampling_args(self.top_k, self.top_p, self.temperature, self.cfg)
        if self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"cfg_schedule must be one of {CFG_SCHEDULES}, got {self.cfg_schedule!r}")
        if self.masked_plan not in MASKED_PLANS:
            raise ValueError(f"masked_plan must be one of {MASKED_PLANS}, got {self.masked_plan!r}")
        for override in self.overrides:
            check_sampling_args(
                override.top_k,
                override.top_p,
                1.0 if override.temperature is None else override.temperature,
                0.0 if override.cfg is None else override.cfg,
            )

    def settings(self, scale_idx: int, num_scales: int) -> ScaleSettings:
        """The settings at ``scale_idx`` of ``num_scales``."""
        cfg, top_k, top_p, temperature = self.cfg, self.top_k, self.top_p, self.temperature
        for override in self.overrides:
            if override.scale_idx == scale_idx:
                cfg = cfg if override.cfg is None else override.cfg
                top_k = top_k if override.top_k is None else override.top_k
                top_p = top_p if override.top_p is None else override.top_p
                temperature = temperature if override.temperature is None else override.temperature
        return ScaleSettings(
            cfg_weight=cfg_weight(cfg, self.cfg_schedule, scale_idx, num_scales),
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
        )

    def full_cfg(self, scale_idx: int) -> float:
        """The guidance strength at ``scale_idx`` before any ramp (the override's cfg, else ``cfg``): the masked
        sampler's head guides with it at every step (official ``t=cfg``)."""
        cfg = self.cfg
        for override in self.overrides:
            if override.scale_idx == scale_idx and override.cfg is not None:
                cfg = override.cfg
        return cfg

    def uses_guidance(self, num_scales: int) -> bool:
        """Whether any scale has a non-zero guidance weight (otherwise the batch is not doubled)."""
        return any(self.settings(k, num_scales).cfg_weight != 0 for k in range(num_scales))


def cfg_weight(cfg: float, schedule: str, scale_idx: int, num_scales: int) -> float:
    if schedule == "constant":
        return cfg
    return cfg * scale_ratio(scale_idx, num_scales)


def scale_ratio(scale_idx: int, num_scales: int) -> float:
    """k / (K - 1): the progress through the scales used by the CFG ramp and the smooth mode."""
    return scale_idx / (num_scales - 1) if num_scales > 1 else 1.0
