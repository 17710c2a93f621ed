"""The metrics window of a run resumed on another number of processes: its first line averages the same steps as
an uninterrupted run (the 2-process case end to end is in test_regrouped_resume.py)."""

import math

import torch

from nextscale.training.metrics import merge_rank_windows, metric_mean, reduce_over_ranks


def _line(rank_windows: list[dict[str, list[torch.Tensor]]]) -> dict[str, float]:
    """What the loop logs for these ranks' windows: each rank's mean over steps, then the mean over ranks (as
    ``reduce_over_ranks`` would with one all-reduce, done here by hand for several simulated ranks)."""
    per_rank = [reduce_over_ranks({name: metric_mean(values) for name, values in w.items()}) for w in rank_windows]
    names = {name for line in per_rank for name in line}
    return {
        name: sum(line[name] for line in per_rank if name in line) / sum(name in line for line in per_rank)
        for name in names
    }


def test_one_process_resuming_two_processes_window_logs_the_uninterrupted_line():
    # two saved steps on 2 ranks, then two more steps whose cross-rank mean one process reproduces
    saved = [
        {"loss": torch.tensor([4.0, 3.0]), "scale_loss": torch.tensor([[1.0, 5.0], [0.5, 4.0]])},
        {"loss": torch.tensor([2.0, 1.0]), "scale_loss": torch.tensor([[3.0, 7.0], [1.5, 6.0]])},
    ]
    later = [
        {"loss": [torch.tensor(0.6), torch.tensor(0.2)], "scale_loss": [torch.tensor([0.0, 2.0])] * 2},
        {"loss": [torch.tensor(0.4), torch.tensor(0.0)], "scale_loss": [torch.tensor([1.0, 3.0])] * 2},
    ]
    uninterrupted = _line(
        [{name: list(saved[r][name].unbind(0)) + later[r][name] for name in saved[r]} for r in range(2)]
    )
    merged, left_out = merge_rank_windows(saved)
    assert left_out == []
    one_process = {name: list(merged[name].unbind(0)) for name in merged}
    for name in ("loss", "scale_loss"):  # the one process's later steps: the cross-rank means of the two ranks'
        one_process[name] += [(a + b) / 2 for a, b in zip(later[0][name], later[1][name])]
    resumed = _line([one_process])
    assert set(resumed) == set(uninterrupted) == {"loss", "scale_loss/scale0", "scale_loss/scale1"}
    assert all(math.isclose(resumed[name], uninterrupted[name], abs_tol=1e-6) for name in resumed)
    # the window as it was dropped before: only the later steps
    assert abs(_line([{name: one_process[name][2:] for name in one_process}])["loss"] - uninterrupted["loss"]) > 0.5


def test_a_scale_no_saved_rank_has_stays_missing_and_mismatched_metrics_are_left_out():
    nan = float("nan")
    saved = [
        {"scale_loss": torch.tensor([[1.0, nan]]), "stage": torch.tensor([1.0])},
        {"scale_loss": torch.tensor([[3.0, nan]]), "stage": torch.tensor([1.0, 2.0])},  # kept for other steps
    ]
    merged, left_out = merge_rank_windows(saved)
    assert left_out == ["stage"] and set(merged) == {"scale_loss"}
    assert merged["scale_loss"][0, 0] == 2.0 and merged["scale_loss"][0, 1].isnan()
    assert merge_rank_windows([{}, {}]) == ({}, [])
