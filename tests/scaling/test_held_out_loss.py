"""`nextscale evaluate --loss`: the VAR paper's L_last, L_avg, Err_last, Err_avg on held-out tokens, computed with
the trainer's own evaluation code (so it equals the run's logged eval line for the same weights)."""

import json

import pytest

from nextscale.cli import main


def test_evaluate_loss_equals_the_trainers_eval_line(token_data, tmp_path):
    tokenizer, tokens, eval_tokens = token_data
    run, pipe, report_path = tmp_path / "run", tmp_path / "pipe", tmp_path / "loss.json"
    train = ["train", "--tokenizer", str(tokenizer), "--tokens", str(tokens), "--eval-tokens", str(eval_tokens)]
    train += ["--run-dir", str(run), "--preset", "tiny", "--steps", "2", "--batch-size", "8", "--lr", "3e-3"]
    train += ["--warmup", "1", "--eval-every", "2", "--eval-samples", "100", "--ema-decay", "none"]
    assert main([*train, "--preview-every", "none", "--no-progress"]) == 0
    assert main(["export", "--run", str(run), "--out", str(pipe)]) == 0
    argv = ["evaluate", "--loss", "--model", str(pipe), "--tokens", str(eval_tokens), "--batch-size", "16"]
    assert main([*argv, "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in logged if line["split"] == "eval"][-1]
    assert report["num_samples"] == 100 and report["scale_sides"] == [1, 2, 4]
    assert report["model_kind"] == "next-scale" and report["token_schedule"].startswith("scales 1, 2, 4: 21 tokens")
    assert report["warnings"] == []  # only a raster model's loss carries the not-comparable line
    assert report["L_avg"] == pytest.approx(logged["loss"], rel=1e-5)
    assert report["scale_loss"] == pytest.approx([logged[f"scale_loss/scale{k}"] for k in range(3)], rel=1e-5)
    assert report["token_error"] == pytest.approx([logged[f"token_error/scale{k}"] for k in range(3)], rel=1e-5)
    assert report["L_last"] == report["scale_loss"][-1] and report["Err_last"] == report["token_error"][-1]
    assert report["Err_avg"] == pytest.approx(sum(n * e for n, e in zip((1, 4, 16), report["token_error"])) / 21)

    # --num caps the sequences
    assert main([*argv, "--num", "10", "--out", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["num_samples"] == 10


def test_evaluate_loss_refusals_are_one_line(token_data, tmp_path, capsys):
    _, _, eval_tokens = token_data
    assert main(["evaluate", "--loss"]) == 2  # no --tokens
    assert "--tokens" in capsys.readouterr().err
    # the bundled model's tokenizer did not make these tokens
    assert main(["evaluate", "--loss", "--tokens", str(eval_tokens)]) == 2
    err = capsys.readouterr().err
    assert "different tokenizer" in err and len(err.strip().splitlines()) == 1
