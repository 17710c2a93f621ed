"""Training curves: metrics.jsonl is read back per split and metric, and drawn into a PNG."""

import json

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.training.curves import family, plot_run, read_metrics


def write_metrics(run_dir, records):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


RECORDS = [
    {"step": 10, "split": "train", "loss": 5.0},
    {"step": 20, "split": "train", "loss": 4.0},
    {"step": 20, "split": "eval", "loss": 4.5, "scale_loss/scale1": 3.0, "scale_loss/scale0": 2.0},
    {"step": 40, "split": "eval", "loss": 4.2, "scale_loss/scale1": 2.5, "scale_loss/scale0": 1.5},
    {"step": 30, "split": "train", "loss": 3.5},
]


def test_read_metrics_groups_by_split_and_sorts_by_step(tmp_path):
    write_metrics(tmp_path, RECORDS)
    series = read_metrics(tmp_path)
    assert series["train"]["loss"] == [(10, 5.0), (20, 4.0), (30, 3.5)]
    assert family(series["eval"], "scale_loss") == {"scale0": [(20, 2.0), (40, 1.5)], "scale1": [(20, 3.0), (40, 2.5)]}
    assert list(family(series["eval"], "loss")) == ["loss"] and family(series["eval"], "psnr") == {}


def test_plot_run_and_cli_write_a_png(tmp_path, capsys):
    write_metrics(tmp_path / "run", RECORDS)
    path = plot_run(tmp_path / "run", tmp_path / "curves.png")
    assert Image.open(path).size[0] > 400
    assert main(["plot", "--run", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "curves.png").is_file() and "curves.png" in capsys.readouterr().out


def test_bad_metrics_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_metrics(tmp_path)
    write_metrics(tmp_path / "other", [{"step": 1, "split": "train", "lr": 0.1}])
    assert main(["plot", "--run", str(tmp_path / "other")]) == 2
    assert "nothing to plot" in capsys.readouterr().err


def test_several_runs_are_compared_in_one_png(tmp_path, capsys):
    write_metrics(tmp_path / "a", RECORDS)
    write_metrics(tmp_path / "b", [{**r, "loss": r["loss"] + 1} for r in RECORDS])
    out = tmp_path / "both.png"
    runs = ["--run", str(tmp_path / "a"), str(tmp_path / "b")]
    assert main(["plot", *runs, "--labels", "tuned", "scratch", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 600
    assert main(["plot", *runs, "--labels", "one", "--out", str(out)]) == 2
    assert "2 runs" in capsys.readouterr().err


def test_a_tokenizer_run_and_a_transformer_run_are_not_drawn_on_one_axis(tmp_path, capsys):
    write_metrics(tmp_path / "var", RECORDS)
    write_metrics(tmp_path / "tok", [{"step": 10, "split": "train", "loss": 0.9, "recon_loss": 0.5}])
    out = tmp_path / "mixed.png"
    assert main(["plot", "--run", str(tmp_path / "var"), str(tmp_path / "tok"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "compare runs of one kind" in err and "(tokenizer)" in err and "(transformer)" in err
    assert not out.exists() and err.count("\n") == 1


def write_config(run_dir, model_class, batch_size, **transformer):
    kind = "tokenizer" if model_class is None else "transformer"
    config = {"kind": kind, "model_class": model_class, "train": {"batch_size": batch_size}, "transformer": transformer}
    (run_dir / "config.json").write_text(json.dumps(config))


def test_runs_compare_at_equal_samples_or_tokens_seen(tmp_path, capsys):
    from nextscale.training.curves import steps_to_x

    var, raster, tokenizer = tmp_path / "var", tmp_path / "raster", tmp_path / "tok"
    for run in (var, raster, tokenizer):
        write_metrics(run, RECORDS)
    write_config(var, "ScaleTransformer", 32, scale_sides=[1, 2, 3, 4, 6, 8])
    write_config(raster, "RasterTransformer", 16, side=8)
    write_config(tokenizer, None, 8)
    assert steps_to_x(var, "step") == (1.0, "step")
    assert steps_to_x(var, "samples") == (32.0, "samples seen")
    assert steps_to_x(var, "tokens") == (32.0 * 130, "tokens seen")  # every scale: 1 + 4 + 9 + 16 + 36 + 64
    assert steps_to_x(raster, "tokens") == (16.0 * 64, "tokens seen")  # the one 8x8 map
    config = json.loads((var / "config.json").read_text())
    (var / "config.json").write_text(json.dumps({**config, "objective": {"keep_tokens": 100}}))
    assert steps_to_x(var, "tokens") == (32.0 * 100, "tokens seen")  # token dropping: the kept tokens are the targets
    (var / "config.json").write_text(json.dumps({**config, "objective": {"progressive": 0.5}}))
    assert steps_to_x(var, "tokens")[1].startswith("tokens seen (at most: progressive training")
    (var / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a transformer run"):
        steps_to_x(tokenizer, "tokens")
    with pytest.raises(ValueError, match="needs the run's batch size"):
        steps_to_x(tmp_path / "nowhere", "samples")

    out = tmp_path / "equal-data.png"
    assert main(["plot", "--run", str(var), str(raster), "--x", "tokens", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > 600
    assert main(["plot", "--run", str(tokenizer), "--x", "tokens"]) == 2
    assert "not a transformer run" in capsys.readouterr().err
