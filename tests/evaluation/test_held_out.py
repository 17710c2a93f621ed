"""Per-scale held-out metrics and the VAR paper's summaries (L_last, L_avg, Err_last, Err_avg)."""

import math

import pytest
import torch

from nextscale.evaluation.held_out import held_out_metrics, per_scale_mean, summarize
from nextscale.scales import ScaleSchedule


def test_summaries_weight_scales_by_their_tokens():
    summary = summarize([2.0, 1.0], [0.5, 0.25], ScaleSchedule((1, 2)))  # the module docstring's example
    assert summary == pytest.approx({"L_last": 1.0, "L_avg": 1.2, "Err_last": 0.25, "Err_avg": 0.3})
    with pytest.raises(ValueError, match="one loss and one error per scale"):
        summarize([1.0], [1.0], ScaleSchedule((1, 2)))


def test_metrics_of_known_logits():
    schedule = ScaleSchedule((1, 2))  # 5 tokens
    tokens = torch.tensor([[0, 1, 1, 0, 2]])
    logits = torch.zeros(1, 5, 3)
    logits[0, torch.arange(5), torch.tensor([0, 1, 0, 0, 2])] = 100.0  # token 2 is predicted wrong, confidently
    metrics = held_out_metrics(logits, tokens, schedule)
    assert metrics["token_error"].tolist() == [[0.0, 0.25]]
    assert metrics["scale_loss"][0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert metrics["scale_loss"][0, 1].item() == pytest.approx(100.0 / 4, rel=1e-4)
    assert metrics["loss"].item() == pytest.approx(100.0 / 5, rel=1e-4)
    # L_avg from the per-scale means equals the mean over all tokens
    summary = summarize(metrics["scale_loss"][0].tolist(), metrics["token_error"][0].tolist(), schedule)
    assert summary["L_avg"] == pytest.approx(metrics["loss"].item(), rel=1e-6)
    assert per_scale_mean(torch.arange(5.0)[None], schedule).tolist() == [[0.0, 2.5]]
    assert not math.isnan(summary["Err_avg"])
