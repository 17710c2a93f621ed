"""A --compute-budget sweep recorded before compute told per-token from per-image parameters keeps planning its
runs with its own count (6 x all parameters x tokens): with the new count a re-run would give its finished runs
1.5x more steps, training them further or refusing them."""

import argparse

from nextscale.cli.scaling import steps_for_budget
from nextscale.cli.scaling_settings import COMPUTE_COUNT, setting_differences, sweep_settings, uses_old_compute_count
from nextscale.scaling.sweep import ComputeParameters


def budget_args(**extra) -> argparse.Namespace:
    options = {"steps": None, "token_budget": None, "compute_budget": 6e9, "tokens": "t", "eval_tokens": None}
    options |= {"tokenizer": "k", "width_base": 16, "batch_size": 8, "eval_every": None}
    return argparse.Namespace(**options, **extra)


def test_an_old_sweep_keeps_its_step_count_and_its_record():
    use, params, tokens = ComputeParameters(per_token=2_000, per_image=1_000), 3_100, 8 * 21
    new = budget_args()
    assert steps_for_budget(new, use, 8, tokens, params) == round(6e9 / (6 * (2_000 * tokens + 1_000 * 8)))
    recorded = {"budget": {"flops": 6e9}}  # a sweep.json written before the count was recorded
    assert uses_old_compute_count(recorded) and not uses_old_compute_count(
        {"budget": sweep_settings(new, [])["budget"]}
    )
    old = budget_args(old_compute_count=True)
    assert steps_for_budget(old, use, 8, tokens, params) == round(6e9 / (6 * params * tokens))
    assert sweep_settings(old, [])["budget"] == {"flops": 6e9}  # the re-run matches its record
    assert setting_differences({**sweep_settings(old, []), **recorded}, sweep_settings(old, [])) == []
    assert sweep_settings(new, [])["budget"] == {"flops": 6e9, "count": COMPUTE_COUNT}
