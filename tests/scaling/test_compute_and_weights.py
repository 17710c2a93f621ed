"""Training compute counts the AdaLN layers once per image, not per token; points say whose held-out losses they
are (raw or EMA weights, how many sequences), and `fit --weights ema` reads the EMA weights' losses (s18 h6)."""

import csv
import json
import shutil

import pytest

from nextscale.cli import main
from nextscale.scaling.sweep import collect_sweep, read_run, training_compute, transformer_compute_parameters
from nextscale.transformer.config import TransformerConfig


def test_adaln_parameters_count_once_per_image():
    config = TransformerConfig.from_depth(16)  # var-d16: width C = 1024, vocab 4096, code_dim 32, 16 blocks
    width, vocab = config.embed_dim, config.vocab_size
    block = 3 * width**2 + (width**2 + width) + 2 * (4 * width**2) + 4 * width + width  # qkv, proj, MLP
    per_token = 16 * block + (config.code_dim + 1) * width + (width + 1) * vocab  # + word embedding and head
    per_image = 16 * (6 * width**2 + 6 * width) + 2 * width**2 + 2 * width  # the blocks' and head's AdaLN
    use = transformer_compute_parameters(config)
    assert (use.per_token, use.per_image) == (per_token, per_image)
    # 6 N D counted the AdaLN per token: 1.51x var-d16's per-token FLOPs at 680 tokens an image
    assert 6 * 310_283_520 * 680 / training_compute(use, 680, 1) == pytest.approx(1.5076, abs=1e-3)


def _with_ema_lines(run_dir, shift):
    """Append an "eval_ema" copy of every "eval" line of a run's metrics, its losses raised by ``shift``."""
    path = run_dir / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        if record.get("split") == "eval":
            ema = {key: value + shift if "loss" in key else value for key, value in record.items() if key != "step"}
            path.open("a").write(json.dumps({**ema, "step": record["step"], "split": "eval_ema"}) + "\n")


def test_points_say_whose_losses_and_fit_reads_the_ema_weights(finished_sweep, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(finished_sweep, out)
    # the tiny sweep keeps no EMA: --weights ema is refused in one line
    assert main(["scaling", "fit", "--sweep", str(out), "--weights", "ema"]) == 2
    assert "drop --weights ema" in capsys.readouterr().err
    for depth in (1, 2):
        _with_ema_lines(out / "runs" / f"d{depth}", shift=0.5)
    raw, ema = read_run(out / "runs" / "d1"), read_run(out / "runs" / "d1", weights="ema")
    assert ema.evals[-1].loss == pytest.approx(raw.evals[-1].loss + 0.5)
    assert (raw.weights, ema.weights, raw.eval_samples) == ("raw", "ema", 32)
    row = raw.row()
    assert row["weights"] == "raw" and row["eval_samples"] == 32 and row["params_per_token"] > 0
    assert row["compute"] < 6 * row["params"] * row["tokens_seen"]  # the per-image AdaLN costs less
    assert main(["scaling", "fit", "--sweep", str(out), "--weights", "ema", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["scaling", "fit", "--sweep", str(out), "--json"]) == 0
    assert plain["beta"] != json.loads(capsys.readouterr().out)["beta"]  # another set of losses was fitted


def test_old_points_files_stay_readable(tmp_path, capsys, finished_sweep):
    # a points.csv of an older sweep: no params_per_token, weights or eval_samples columns
    old = tmp_path / "points.csv"
    with open(finished_sweep / "points.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [name for name in rows[0] if name not in ("params_per_token", "params_per_image", "weights", "eval_samples")]
    old.write_text(",".join(kept) + "\n" + "".join(",".join(row[name] for name in kept) + "\n" for row in rows))
    assert main(["scaling", "fit", "--csv", str(old), "--x", "compute", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_points"] == 2
    assert [run.weights for run in collect_sweep(finished_sweep)] == ["raw", "raw"]
