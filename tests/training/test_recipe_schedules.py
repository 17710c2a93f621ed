"""The LR / weight-decay schedules equal a direct transcription of VAR's ``lr_wd_annealing`` (utils/lr_control.py;
VAR_REFERENCE.md section 5) at every step, for several (total, warm-up) settings including edge cases."""

import math

import pytest

from nextscale.training.schedules import lr_factor, peak_lr, warmup_steps_for, weight_decay_at


def official_lr_factor(schedule: str, it: int, warmup_it: float, max_it: int, wp0: float, wpe: float) -> float:
    """VAR's LR factor at global iteration ``it`` (``peak_lr`` multiplies it)."""
    warmup_it = round(warmup_it)
    if it < warmup_it:
        return wp0 + (1 - wp0) * it / warmup_it
    passed = (it - warmup_it) / (max_it - 1 - warmup_it)
    rest = 1 - passed
    if schedule == "cos":
        return wpe + (1 - wpe) * (0.5 + 0.5 * math.cos(math.pi * passed))
    if schedule == "lin0":
        return 1 if passed < 0.05 else wpe + (1 - wpe) * rest / 0.95
    fraction = float(schedule[3:])  # lin<T>, used with progressive training (T = pg)
    middle = (1 + wpe + (1 - wpe) * (1 - fraction)) / 2
    if passed < fraction:
        return 1 + (middle - 1) * passed / fraction
    return wpe + (middle - wpe) * rest / (1 - fraction)


def official_weight_decay(it: int, max_it: int, twd: float, twde: float) -> float:
    return twde + (twd - twde) * (0.5 + 0.5 * math.cos(math.pi * it / (max_it - 1)))


# (epochs, iterations per epoch): the ImageNet d16 run (bs 768: 1669 iterations), short and degenerate runs.
RUNS = [(200, 1669), (3, 100), (50, 2), (10, 10), (2, 1), (1, 7)]


def steps_of(total: int) -> list[int]:
    if total <= 2000:
        return list(range(total))
    return sorted({*range(0, total, 997), *range(6600, 7000), *range(total - 50, total)})


@pytest.mark.parametrize("schedule", ["lin0", "cos", "lin0.5", "lin0.8"])
@pytest.mark.parametrize("end_factor", [0.1, 0.01])
@pytest.mark.parametrize("epochs,iterations", RUNS)
def test_lr_factor_equals_the_official_formula(schedule, end_factor, epochs, iterations):
    total = epochs * iterations
    warmup = warmup_steps_for(total, 0.02)  # VAR: wp = ep / 50 epochs
    assert warmup == round(epochs / 50 * iterations)
    for step in steps_of(total):
        expected = official_lr_factor(schedule, step, epochs / 50 * iterations, total, 0.005, end_factor)
        assert lr_factor(step, total, warmup, schedule, 0.005, end_factor) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("twd,twde", [(0.05, 0.05), (0.05, 0.08)])
@pytest.mark.parametrize("epochs,iterations", RUNS)
def test_weight_decay_equals_the_official_cosine(twd, twde, epochs, iterations):
    total = epochs * iterations
    for step in steps_of(total):
        expected = official_weight_decay(step, total, twd, twde)
        assert weight_decay_at(step, total, twd, None if twde == twd else twde) == pytest.approx(expected, rel=1e-12)


def test_lin_t_schedule_hand_values():
    # 101 steps, no warm-up: progress = step / 100; "lin0.5" with end 0.01 has its midpoint at 0.7525
    f = lambda step: lr_factor(step, 101, 0, "lin0.5", 0.005, 0.01)  # noqa: E731
    assert f(0) == 1.0
    assert f(25) == pytest.approx(0.87625)
    assert f(50) == pytest.approx(0.7525)
    assert f(100) == pytest.approx(0.01)
    for bad in ("lin1", "lin1.5", "linx", "lin-0.5"):
        with pytest.raises(ValueError, match="schedule"):
            lr_factor(0, 10, 1, bad)


@pytest.mark.parametrize(
    "depth,batch,base_lr,peak",
    [(16, 768, 1e-4, 3e-4), (20, 768, 1e-4, 3e-4), (24, 768, 8e-5, 2.4e-4), (30, 1024, 8e-5, 3.2e-4)],
)
def test_peak_lr_of_the_readme_runs(depth, batch, base_lr, peak):
    assert peak_lr(base_lr, batch) == pytest.approx(peak)
    # VAR: tlr = ac * tblr * (bs / ac) / 256, the same peak with accumulation
    assert peak_lr(base_lr, batch // 2, grad_accum=2) == pytest.approx(peak)
