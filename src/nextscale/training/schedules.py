"""Learning-rate, weight-decay and progressive-training schedules: pure functions of the step.

The shapes follow the official VAR trainer (``utils/lr_control.py`` ``lr_wd_annealing`` and the
progressive-stage logic of ``train.py``), with steps counted from 0 and ``total_steps`` iterations in all.

Worked example (``lin0``, 1000 steps, 20 warm-up steps, end factor 0.01): step 0 -> 0.005, step 10 ->
0.5025, steps 20..68 -> 1.0 (the first 5 % after warm-up stay flat), step 999 -> 0.01, linear in between.

Steps are optimizer steps. The official trainer counts micro-batches (``g_it``) instead, so with gradient
accumulation its schedule advances ``accum`` times per optimizer step; without accumulation the two are the same.

References: VAR ``utils/lr_control.py``, ``train.py`` (``pg``, ``pg0``, ``pgwp``); VAR_REFERENCE.md section 5.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("lin0", "cos", "constant")  # and "lin<T>", 0 < T < 1 (e.g. "lin0.5"), see lr_factor


def peak_lr(base_lr: float, global_batch: int, grad_accum: int = 1) -> float:
    """The official LR rule: ``base_lr`` is the rate per 256 images, ``peak = accum * base_lr * batch / 256``.

    As in VAR ``utils/arg_util.py``, ``global_batch`` is one micro-batch over all ranks and ``grad_accum``
    multiplies it back, so the rule depends only on the samples per optimizer step: pass either
    (micro-batch x ranks, accum) or (samples per optimizer step, 1), never the latter with accum > 1.

    Args:
        base_lr: learning rate per 256 samples (VAR ``tblr``, 1e-4).
        global_batch: samples of one forward pass over all ranks (VAR ``glb_batch_size``).
        grad_accum: gradient-accumulation steps (VAR ``ac``).
    """
    if base_lr <= 0 or global_batch < 1 or grad_accum < 1:
        raise ValueError(
            f"need base_lr > 0, global_batch >= 1, grad_accum >= 1; got {base_lr}, {global_batch}, {grad_accum}"
        )
    return grad_accum * base_lr * global_batch / 256


def warmup_steps_for(total_steps: int, warmup: float) -> int:
    """Warm-up length: ``warmup`` >= 1 is a step count, 0 < ``warmup`` < 1 a fraction of ``total_steps``.

    The official default is 2 % of training (``wp = ep / 50``); 0 turns warm-up off.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0 (steps, or a fraction below 1), got {warmup}")
    return int(round(warmup * total_steps)) if warmup < 1 else int(warmup)


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "lin0",
    warmup_start: float = 0.005,
    end_factor: float = 0.01,
) -> float:
    """Multiplier on the peak learning rate at ``step``.

    Warm-up rises linearly from ``warmup_start`` (VAR ``wp0``) to 1 over ``warmup_steps``. Afterwards,
    with progress p = (step - warmup) / (total - 1 - warmup) in [0, 1]:
    ``lin0`` stays at 1 while p < 0.05, then falls linearly to ``end_factor`` (VAR ``wpe``) at p = 1;
    ``cos`` is a half cosine from 1 to ``end_factor``; ``constant`` stays at 1;
    ``lin<T>`` (VAR's schedule under progressive training, T = ``pg``) falls linearly from 1 to a midpoint
    m = (1 + e + (1 - e)(1 - T)) / 2 while p < T, then linearly from m to e = ``end_factor`` at p = 1.
    Example: "lin0.5", e = 0.01 -> m = 0.7525; p = 0.25 -> 0.87625.

    Args:
        step: 0-based optimizer step.
        total_steps: number of optimizer steps of the run.
        warmup_steps: length of the warm-up.
        schedule: "lin0", "cos", "constant" or "lin<T>" with 0 < T < 1.
        warmup_start: factor at step 0.
        end_factor: factor at the last step.
    """
    ramp = _ramp_fraction(check_lr_schedule(schedule))
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {total_steps}, {warmup_steps}"
        )
    if step < warmup_steps:
        return warmup_start + (1 - warmup_start) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    span = total_steps - 1 - warmup_steps
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0) if span > 0 else 1.0
    if schedule == "cos":
        return end_factor + (1 - end_factor) * (0.5 + 0.5 * math.cos(math.pi * progress))
    if ramp is not None:
        middle = (1 + end_factor + (1 - end_factor) * (1 - ramp)) / 2
        if progress < ramp:
            return 1 + (middle - 1) * progress / ramp
        return end_factor + (middle - end_factor) * (1 - progress) / (1 - ramp)
    flat = 0.05  # lin0 keeps the peak for the first 5 % of the post-warm-up steps
    if progress < flat:
        return 1.0
    return end_factor + (1 - end_factor) * (1 - progress) / (1 - flat)


def check_lr_schedule(schedule: str) -> str:
    """``schedule`` if it names a schedule of :func:`lr_factor`, else a ValueError listing them."""
    if schedule not in LR_SCHEDULES and _ramp_fraction(schedule) is None:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES} or 'lin<T>' with 0 < T < 1, got {schedule!r}")
    return schedule


def _ramp_fraction(schedule: str) -> float | None:
    """T of a "lin<T>" schedule name (0 < T < 1), else None ("lin0" is its own schedule, as in VAR)."""
    if schedule in LR_SCHEDULES or not schedule.startswith("lin"):
        return None
    try:
        fraction = float(schedule[3:])
    except ValueError:
        return None
    return fraction if 0 < fraction < 1 else None


def weight_decay_at(step: int, total_steps: int, start: float, end: float | None = None) -> float:
    """Cosine from ``start`` (VAR ``twd``) at step 0 to ``end`` (``twde``; None = constant) at the last step."""
    end = start if end is None else end
    progress = step / (total_steps - 1) if total_steps > 1 else 1.0
    return end + (start - end) * (0.5 + 0.5 * math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def progressive_stage(
    step: int, total_steps: int, warmup_steps: int, num_scales: int, fraction: float, first_stage: int
) -> int:
    """Index of the finest scale trained at ``step`` under progressive training (VAR ``pg``, ``pg0``).

    Stage ``first_stage`` during warm-up; all scales (``num_scales - 1``) once ``fraction`` of training
    has passed; in between ``first_stage + round(p * (num_scales - 1 - first_stage))`` with
    p = (step - warmup) / (fraction * total - warmup). ``fraction`` 0 turns progressive training off.

    Example: 10 scales, first stage 4, fraction 0.5, 1000 steps, 20 warm-up: step 10 -> 4, step 260 -> 6
    (p = 0.5, 4 + round(2.5) = 6 with Python's banker's rounding), step 500 -> 9.
    """
    last = num_scales - 1
    if fraction <= 0:
        return last
    if not 0 <= first_stage <= last:
        raise ValueError(f"first_stage must be in [0, {last}], got {first_stage}")
    if step < warmup_steps:
        return first_stage
    end = fraction * total_steps
    if step >= end or end <= warmup_steps:
        return last
    progress = (step - warmup_steps) / (end - warmup_steps)
    return min(first_stage + round(progress * (last - first_stage)), last)


def progressive_newest_weight(steps_in_stage: int, stage_warmup_steps: int, is_first_stage: bool) -> float:
    """Loss weight of the newest scale after a stage change: ``steps_in_stage / stage_warmup_steps`` clamped to
    [0.01, 1] (VAR ``prog_it / pgwp``; ``steps_in_stage`` is 1 on the stage's first step, as ``prog_it``).

    ``is_first_stage``: a stage that ramps nothing in (weight 1): the official trainer's first stage, and its last.
    """
    if is_first_stage or stage_warmup_steps <= 0:
        return 1.0
    return min(max(steps_in_stage / stage_warmup_steps, 0.01), 1.0)
