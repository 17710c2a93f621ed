"""Schedules against hand-computed values (VAR lin0 / cos, weight-decay cosine, progressive stages)."""

import math

import pytest

from nextscale.training.schedules import (
    lr_factor,
    peak_lr,
    progressive_newest_weight,
    progressive_stage,
    warmup_steps_for,
    weight_decay_at,
)


def test_peak_lr_rule():
    assert peak_lr(1e-4, 768) == pytest.approx(3e-4)  # VAR d16: bs 768 -> 3e-4
    assert peak_lr(1e-4, 256, grad_accum=2) == pytest.approx(2e-4)
    with pytest.raises(ValueError):
        peak_lr(0.0, 256)


def test_warmup_steps():
    assert warmup_steps_for(1000, 0.02) == 20
    assert warmup_steps_for(1000, 50) == 50
    assert warmup_steps_for(1000, 0) == 0


def test_lin0_hand_values():
    # 1000 steps, 20 warm-up, end 0.01: span 979; flat while (step - 20) / 979 < 0.05, i.e. up to step 68.
    f = lambda s: lr_factor(s, 1000, 20, "lin0", 0.005, 0.01)  # noqa: E731
    assert f(0) == pytest.approx(0.005)
    assert f(10) == pytest.approx(0.005 + 0.995 * 0.5)
    assert f(20) == 1.0 and f(68) == 1.0
    assert f(69) == pytest.approx(0.01 + 0.99 * (1 - 49 / 979) / 0.95)
    assert f(509) == pytest.approx(0.01 + 0.99 * (1 - 489 / 979) / 0.95)
    assert f(999) == pytest.approx(0.01)


def test_cos_and_constant():
    assert lr_factor(20, 1000, 20, "cos", end_factor=0.1) == pytest.approx(1.0)
    mid = 20 + 979 / 2
    assert lr_factor(int(mid), 1000, 20, "cos", end_factor=0.1) == pytest.approx(
        0.1 + 0.9 * (0.5 + 0.5 * math.cos(math.pi * (int(mid) - 20) / 979))
    )
    assert lr_factor(999, 1000, 20, "cos", end_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(500, 1000, 20, "constant") == 1.0
    assert lr_factor(0, 1000, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, 1, "exp")


def test_weight_decay_cosine():
    assert weight_decay_at(0, 101, 0.05) == 0.05 and weight_decay_at(100, 101, 0.05) == 0.05
    assert weight_decay_at(0, 101, 0.05, 0.08) == pytest.approx(0.05)
    assert weight_decay_at(50, 101, 0.05, 0.08) == pytest.approx(0.065)
    assert weight_decay_at(100, 101, 0.05, 0.08) == pytest.approx(0.08)


def test_progressive_stage():
    stage = lambda s: progressive_stage(s, 1000, 20, 10, 0.5, 4)  # noqa: E731
    assert stage(0) == 4 and stage(19) == 4
    assert stage(20) == 4  # progress 0
    assert stage(260) == 6  # progress 0.5: 4 + round(2.5) = 6 (banker's rounding, as Python's round)
    assert stage(499) == 9 and stage(500) == 9 and stage(999) == 9
    steps = [stage(s) for s in range(1000)]
    assert steps == sorted(steps)  # never goes back
    assert progressive_stage(5, 1000, 20, 10, 0.0, 4) == 9  # off


def test_progressive_newest_weight():
    assert progressive_newest_weight(0, 100, is_first_stage=True) == 1.0
    assert progressive_newest_weight(0, 100, is_first_stage=False) == 0.01
    assert progressive_newest_weight(50, 100, is_first_stage=False) == 0.5
    assert progressive_newest_weight(500, 100, is_first_stage=False) == 1.0


def test_the_progressive_lr_schedule_is_accepted_where_schedules_are_named():
    import argparse

    from nextscale.training.config import TrainConfig
    from nextscale.training.options import lr_schedule_name

    assert lr_schedule_name("lin0.8") == "lin0.8" and TrainConfig(lr_schedule="lin0.8").lr_schedule == "lin0.8"
    for bad in ("lin1", "lin-0.5", "linear", "lin"):
        with pytest.raises(argparse.ArgumentTypeError, match="lin<T>"):
            lr_schedule_name(bad)
        with pytest.raises(ValueError, match="lin<T>"):
            TrainConfig(lr_schedule=bad)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"total_steps": 4, "warmup": 50}, r"--warmup 50 is 50 warm-up steps, more than the run's 4"),
        ({"grad_clip": 0.0}, r"--grad-clip must be > 0 \(or 'none'"),
        ({"lr": 0.0}, r"peak learning rate must be > 0 \(--lr, or --base-lr"),
        ({"base_lr": -1e-4}, r"need base_lr > 0"),
        ({"end_lr_factor": -0.1}, r"--end-lr-factor must be >= 0"),
        ({"weight_decay": -0.05}, r"--weight-decay must be >= 0"),
        ({"weight_decay_end": -1.0}, r"--weight-decay-end must be >= 0"),
    ],
)
def test_train_config_refuses_a_warmup_longer_than_the_run_and_a_zero_clip(settings, message):
    """Refused when the config is made, before any work (the warm-up used to fail at the first step with the
    schedule's own message; a clip of 0 zeroed every gradient and trained nothing, silently)."""
    from nextscale.training.config import TrainConfig

    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)
    assert TrainConfig(total_steps=4, warmup=4, grad_clip=None).warmup_steps == 4


@pytest.mark.parametrize("epochs", [0.0, -2.0])
def test_epochs_that_are_no_length_are_refused(epochs):
    """--epochs 0 (or negative) used to become a one-step run without a word."""
    import argparse

    from nextscale.cli import train
    from nextscale.training.options import train_config_from_args

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--epochs", str(epochs)])
    with pytest.raises(ValueError, match=r"--epochs must be > 0"):
        train_config_from_args(args, samples_per_epoch=200)
    args.epochs = 0.5
    assert train_config_from_args(args, samples_per_epoch=200 * 768).total_steps == 100
