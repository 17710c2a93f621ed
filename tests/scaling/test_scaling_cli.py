"""`nextscale scaling run / fit / plot` end to end on tiny models, and the sweep's bookkeeping."""

import csv
import json
import shutil

import numpy as np
import pytest

from nextscale.cli import main
from nextscale.cli.scaling_fit import FIT_JSON_KEYS
from nextscale.scaling.sweep import collect_sweep, count_parameters, transformer_parameters
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer


def _points(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sweep_trains_records_resumes_and_extends(finished_sweep, sweep_argv, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(finished_sweep, out)  # `scaling run --depths 1 2` with sweep_argv's settings
    rows = _points(out / "points.csv")
    assert [row["run"] for row in rows] == ["d1", "d2"]
    for row, depth in zip(rows, (1, 2)):
        config = TransformerConfig.from_depth(
            depth, embed_dim=16 * depth, num_classes=10, vocab_size=64, code_dim=8, scale_sides=(1, 2, 4)
        )
        assert int(row["embed_dim"]) == 16 * depth and int(row["num_heads"]) == depth  # the shape rule
        assert int(row["params"]) == sum(p.numel() for p in ScaleTransformer(config).parameters())
        assert int(row["tokens_per_sample"]) == 21 and int(row["step"]) == 3
        assert int(row["tokens_seen"]) == 3 * 8 * 21
        per_token, per_image = int(row["params_per_token"]), int(row["params_per_image"])
        assert per_token + per_image < int(row["params"])  # the lookup tables do no multiply-adds
        assert float(row["compute"]) == pytest.approx(6 * (per_token * 3 * 8 * 21 + per_image * 3 * 8))
        assert 0 < float(row["loss"]) and 0 <= float(row["error"]) <= 1
        assert row["finished"] == "True" and row["seed"] == "0"  # train's default seed: no --seeds, no --seed
    # the last eval line of the run is what the row holds; L_avg is the token-weighted mean of the scales
    lines = [json.loads(x) for x in (out / "runs" / "d2" / "metrics.jsonl").read_text().splitlines()]
    last_eval = [x for x in lines if x["split"] == "eval"][-1]
    assert float(rows[1]["loss"]) == pytest.approx(last_eval["loss"])
    assert float(rows[1]["loss_last"]) == pytest.approx(last_eval["scale_loss/scale2"])
    weighted = sum(n * last_eval[f"scale_loss/scale{k}"] for k, n in enumerate((1, 4, 16))) / 21
    assert weighted == pytest.approx(last_eval["loss"], rel=1e-5)
    document = json.loads((out / "points.json").read_text())
    assert [len(run["evals"]) for run in document["runs"]] == [3, 3]
    assert "6 x (params_per_token x tokens_seen + params_per_image" in document["accounting"]["compute"]

    # re-running with one more depth trains only the new one (a metrics line cut short is no obstacle)
    with open(out / "runs" / "d2" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "split": "ev')
    capsys.readouterr()
    assert main(sweep_argv(out, [1, 2, 3])) == 0
    printed = capsys.readouterr().out
    assert "d1: finished (3 steps), kept" in printed and "d2: finished" in printed
    assert printed.count("$ nextscale train") == 1
    assert [row["run"] for row in _points(out / "points.csv")] == ["d1", "d2", "d3"]
    assert json.loads((out / "sweep.json").read_text())["depths"] == [1, 2, 3]

    # fit and plot from the sweep folder
    capsys.readouterr()
    assert main(["scaling", "fit", "--sweep", str(out), "--json"]) == 0
    assert tuple(json.loads(capsys.readouterr().out)) == FIT_JSON_KEYS
    pytest.importorskip("matplotlib")
    assert main(["scaling", "plot", "--sweep", str(out)]) == 0
    assert (out / "scaling.png").stat().st_size > 10_000


def test_compute_budget_gives_smaller_models_more_steps(token_data, tmp_path, capsys):
    import argparse

    from nextscale.cli.scaling import add_arguments, model_inputs, parse_train_flags, plan_run

    tokenizer_dir, tokens, eval_tokens = token_data
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["run", "--out", str(tmp_path), "--depths", "1", "2", "--tokens", str(tokens), "--eval-tokens",
         str(eval_tokens), "--tokenizer", str(tokenizer_dir), "--width-base", "16", "--batch-size", "8",
         "--compute-budget", "1e9"]
    )  # fmt: skip
    inputs = model_inputs(parse_train_flags(args, 1, ["--preset", "tiny"])[1])
    plans = {depth: plan_run(args, depth, ["--preset", "tiny"], inputs) for depth in (1, 2)}
    for argv, steps, params in plans.values():
        # more steps than 6 N D gives: the per-image AdaLN and the lookup tables do not cost per token
        assert round(1e9 / (6 * params * 8 * 21)) < steps < 2 * round(1e9 / (6 * params * 8 * 21))
        assert argv[argv.index("--steps") + 1] == str(steps)
        assert argv[argv.index("--eval-every") + 1] == str(-(-steps // 10))
    assert plans[1][1] > plans[2][1]


def test_token_dropping_counts_the_kept_tokens_in_budgets_and_points(token_data, finished_sweep, tmp_path):
    import argparse

    from nextscale.cli.scaling import add_arguments, model_inputs, parse_train_flags, plan_run
    from nextscale.scaling.sweep import read_run

    tokenizer_dir, tokens, eval_tokens = token_data
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["run", "--out", str(tmp_path), "--depths", "1", "--tokens", str(tokens), "--eval-tokens",
         str(eval_tokens), "--tokenizer", str(tokenizer_dir), "--width-base", "16", "--batch-size", "8",
         "--token-budget", "1680"]
    )  # fmt: skip
    inputs = model_inputs(parse_train_flags(args, 1, ["--preset", "tiny"])[1])
    assert plan_run(args, 1, ["--preset", "tiny"], inputs)[1] == 1680 // (8 * 21)  # 21 tokens a map: 10 steps
    # training on 10 of the 21 tokens of each map sees 80 tokens a step: the budget lasts 21 steps, not 10
    assert plan_run(args, 1, ["--preset", "tiny", "--keep-tokens", "10"], inputs)[1] == 1680 // (8 * 10)
    run = tmp_path / "d1"
    shutil.copytree(finished_sweep / "runs" / "d1", run)
    full = read_run(run)
    config = json.loads((run / "config.json").read_text())
    config["objective"]["keep_tokens"] = 10  # as `nextscale train --keep-tokens 10` records it
    (run / "config.json").write_text(json.dumps(config))
    dropped = read_run(run)
    assert (full.tokens_per_sample, dropped.tokens_per_sample) == (21, 10)
    assert dropped.evals[-1].tokens_seen == full.evals[-1].tokens_seen * 10 // 21 == 3 * 8 * 10
    assert dropped.evals[-1].compute == 6 * (dropped.params_per_token * 3 * 8 * 10 + dropped.params_per_image * 3 * 8)


def test_sweep_refuses_flags_it_owns(token_data, tmp_path, capsys):
    tokenizer, tokens, eval_tokens = token_data
    argv = ["scaling", "run", "--out", str(tmp_path), "--depths", "1", "--tokens", str(tokens), "--eval-tokens"]
    argv += [str(eval_tokens), "--tokenizer", str(tokenizer), "--steps", "2", "--", "--embed-dim", "32"]
    assert main(argv) == 2
    assert "--embed-dim is set by the sweep" in capsys.readouterr().err


def test_fit_reads_any_csv_and_prints_one_json_object(tmp_path, capsys):
    table = tmp_path / "points.csv"
    params = [1e5, 1e6, 1e7, 1e8]
    lines = ["name,params,loss"] + [f"m{i},{n},{(2e-4 * n) ** -0.2}" for i, n in enumerate(params)]
    table.write_text("\n".join(lines) + "\n")
    assert main(["scaling", "fit", "--csv", str(table), "--x", "params", "--y", "loss", "--json"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert tuple(result) == FIT_JSON_KEYS and printed.count("\n") == 1
    assert result["alpha"] == pytest.approx(-0.2) and result["beta"] == pytest.approx(2e-4)
    assert result["pearson_r"] == pytest.approx(-1.0)
    # an exact law: no error; no seed or depth column (a table of any origin): rows are grouped by X
    assert result["alpha_stderr"] == pytest.approx(0, abs=1e-12)
    assert result["alpha_ci95"] == [pytest.approx(-0.2), pytest.approx(-0.2)]
    assert result["num_points"] == 4 and result["num_seeds"] is None
    assert [group["x"] for group in result["per_depth"]] == params
    assert all(group["depth"] is None and group["std"] is None for group in result["per_depth"])
    assert main(["scaling", "fit", "--csv", str(table)]) == 0  # defaults: --x params --y loss
    printed = capsys.readouterr().out
    assert "alpha = -0.2" in printed and "95 % confidence interval" in printed and "2 degrees of freedom" in printed
    assert "runs:" not in printed  # one run per size: no spread to report


def test_fit_irreducible_finds_the_floor_of_a_table(tmp_path, capsys):
    table = tmp_path / "points.csv"
    params = [1e5, 3e5, 1e6, 3e6, 1e7, 3e7]
    lines = ["name,params,loss"] + [f"m{i},{n},{2.0 + (1e-5 * n) ** -0.3}" for i, n in enumerate(params)]
    table.write_text("\n".join(lines) + "\n")
    assert main(["scaling", "fit", "--csv", str(table), "--irreducible", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result)[:4] == ["alpha", "beta", "irreducible", "rms_log_residual"]
    assert result["num_points"] == 6 and result["degrees_of_freedom"] == 3 and result["floor_supported"] is True
    assert result["irreducible"] == pytest.approx(2.0, abs=1e-4) and result["alpha"] == pytest.approx(-0.3, abs=1e-3)
    assert main(["scaling", "fit", "--csv", str(table), "--irreducible"]) == 0
    printed = capsys.readouterr().out
    assert "L_inf = 2" in printed and "as a plain power law" in printed and "the floor is supported" in printed
    assert main(["scaling", "fit", "--csv", str(table), "--irreducible", "--frontier"]) == 2
    assert "leave out --frontier" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "flags", "message"),
    [
        ("params,loss\n1e6,2.0\n", [], "at least 2 points"),
        ("params,loss\n1e6,2.0\n1e7,0\n", [], "row 2 (params 1e7): column 'loss' holds '0'; a power law takes logs"),
        ("params,loss\n1e6,2.0\n1e7,1.5\n", ["--y", "error"], "no column 'error'"),
        ("params,loss\n1e6,2.0\n1e7,abc\n", [], "row 2 (params 1e7): column 'loss' holds 'abc'"),
        ("params,loss\n", [], "no data rows"),
    ],
)
def test_fit_errors_are_one_line(tmp_path, capsys, content, flags, message):
    table = tmp_path / "points.csv"
    table.write_text(content)
    assert main(["scaling", "fit", "--csv", str(table), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_plot_from_a_csv_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    table = tmp_path / "points.csv"
    rows = ["run,params,compute,loss,loss_last"] + [
        f"d{d},{n},{6 * n * 1e6},{(1e-3 * n) ** -0.1},{(1e-3 * n) ** -0.08}" for d, n in ((2, 1e5), (3, 3e5), (4, 1e6))
    ]
    table.write_text("\n".join(rows) + "\n")
    assert main(["scaling", "plot", "--csv", str(table), "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert main(["scaling", "plot", "--csv", str(table)]) == 2  # --out is required with a table


def test_a_table_saved_with_a_byte_order_mark_reads_its_first_column(tmp_path, capsys):
    table = tmp_path / "points.csv"  # Excel's "CSV UTF-8" starts the file with U+FEFF
    table.write_text("\ufeffparams,loss\n1e6,2.0\n1e7,1.5\n1e8,1.2\n", encoding="utf-8")
    assert main(["scaling", "fit", "--csv", str(table), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_points"] == 3


@pytest.mark.parametrize("command", [["scaling", "plot", "--csv", "TABLE"], ["plot", "--run", "RUN"]])
def test_plot_out_must_be_a_png_file_checked_before_drawing(tmp_path, capsys, command):
    pytest.importorskip("matplotlib")
    table = tmp_path / "points.csv"
    table.write_text("run,params,compute,loss\nd1,1e5,1e12,3.0\nd2,1e6,1e13,2.5\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 3.0}\n')
    argv = [{"TABLE": str(table), "RUN": str(run)}.get(word, word) for word in command]
    for out, message in [
        (tmp_path / "fig.jpg", "the figure is a PNG; end the name with .png (e.g. "),  # PNG bytes under .jpg before
        (tmp_path / "fig", "the figure is a PNG"),
        (run, "is a folder; give a file name"),  # named a temporary file, after drawing
    ]:
        assert main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and ".tmp" not in err
    assert not (tmp_path / "fig.jpg").exists() and not (tmp_path / "fig").exists()
    assert main([*argv, "--out", str(tmp_path / "fig.PNG")]) == 0


def test_parameters_count_everything_and_embeddings_apart():
    config = TransformerConfig.from_depth(16)
    total, non_embedding = transformer_parameters(config)
    assert total == 310_283_520  # VAR-d16: "310M"
    model = ScaleTransformer(TransformerConfig.from_depth(2, embed_dim=32, vocab_size=64, code_dim=8))
    embedding = sum(
        p.numel() for module in (model.class_embedder, model.word_embed, model.level_embed) for p in module.parameters()
    )
    embedding += model.pos_embed.numel() + model.start_pos.numel()
    total = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == (total, total - embedding)


def test_collect_sweep_needs_a_sweep_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sweep"):
        collect_sweep(tmp_path)


def test_plot_irreducible_draws_the_law_above_a_floor(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import draw_scaling

    sizes = (1e5, 3e5, 1e6, 3e6, 1e7)
    rows = [{"params": n, "compute": 6e6 * n, "loss": 2.0 + (1e-5 * n) ** -0.3} for n in sizes]
    plain = draw_scaling(rows).axes[0]
    both = draw_scaling(rows, irreducible=True).axes[0]
    assert len(both.get_lines()) == len(plain.get_lines()) + 1
    dotted = [line for line in both.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1 and dotted[0].get_label().startswith("L_avg = 2 + (1e-05·N)^-0.3; floor supported")
    x, y = dotted[0].get_data()
    np.testing.assert_allclose(y, 2.0 + (1e-5 * np.asarray(x)) ** -0.3, rtol=1e-4)  # through the law's points
    table = tmp_path / "points.csv"
    table.write_text(
        "run,params,compute,loss\n"
        + "".join(f"r{i},{r['params']},{r['compute']},{r['loss']}\n" for i, r in enumerate(rows))
    )
    assert main(["scaling", "plot", "--csv", str(table), "--irreducible", "--out", str(tmp_path / "f.png")]) == 0


def test_a_table_row_shorter_than_its_header_is_left_out_in_words(tmp_path, capsys):
    table = tmp_path / "points.csv"
    table.write_text("params,loss,finished\n10,3.0,True\n100,2.5\n1000,2.1,True\n")  # row 2 lacks "finished"
    assert main(["scaling", "fit", "--csv", str(table), "--json"]) == 0
    captured = capsys.readouterr()
    assert "left out row 2: unfinished" in captured.err and json.loads(captured.out)["num_points"] == 2


def test_plot_refuses_non_positive_sizes_in_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import draw_scaling

    rows = [{"params": n, "compute": 1e6 * (n + 1), "loss": 3.0 - n / 1e3} for n in (0, 100, 1000)]
    with pytest.raises(ValueError, match="positive, finite 'params'"):
        draw_scaling(rows)


def test_info_describes_a_sweep_run_by_run(finished_sweep):
    from nextscale.cli.info import describe
    from nextscale.scaling.sweep import collect_sweep

    report = describe(str(finished_sweep))
    runs = collect_sweep(finished_sweep)
    assert report["what"].endswith(f"a scaling sweep of {len(runs)} runs ({len(runs)} finished)")
    for run in runs:
        assert report[run.run].startswith("N = ") and f"L_avg {run.evals[-1].loss:.4g}" in report[run.run]
