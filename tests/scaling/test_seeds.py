"""`scaling run --seeds`: one run per depth and seed, the seed reaching `nextscale train`, resume and refusals, and
what fit, plot and samples make of several seeds per depth."""

import contextlib
import csv
import io
import json
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch
from tiny_sweep import SWEEP_SETTINGS, TRAIN_FLAGS

from nextscale.cli import main
from nextscale.scaling.power_law import fit_power_law
from nextscale.scaling.sweep import collect_sweep
from nextscale.training.checkpoint import latest_checkpoint, load_checkpoint

SEEDS_0_1 = (*SWEEP_SETTINGS, "--seeds", "0", "1")
Sweep = namedtuple("Sweep", "out printed")


def _points(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _evals(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if line["split"] == "eval"]


def _weights(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))["models"]


def _same_weights(first, second) -> bool:
    """Two checkpoints' {model name: state dict} hold equal tensors under equal names."""
    if first.keys() != second.keys() or any(first[name].keys() != second[name].keys() for name in first):
        return False
    return all(torch.equal(first[name][key], second[name][key]) for name in first for key in first[name])


def _run(argv) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(argv)
    return status, printed.getvalue()


@pytest.fixture(scope="module")
def seeded_sweep(finished_sweep, sweep_argv, tmp_path_factory):
    """The finished sweep (depths 1, 2 at the base seed 0) extended with `--seeds 0 1`, and what it printed."""
    out = tmp_path_factory.mktemp("seeded-sweep") / "sweep"
    shutil.copytree(finished_sweep, out)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the `one_thread` fixture, which a module fixture cannot use
    try:
        status, printed = _run(sweep_argv(out, [1, 2], settings=SEEDS_0_1))
    finally:
        torch.set_num_threads(previous)
    assert status == 0, printed
    return Sweep(out, printed)


def test_adding_a_seed_trains_only_its_runs_and_records_it(seeded_sweep, finished_sweep):
    out, printed = seeded_sweep
    assert "d1: finished (3 steps), kept" in printed and "d2: finished (3 steps), kept" in printed
    assert printed.count("$ nextscale train") == 2 and "d1-seed1: N = " in printed
    commands = [line for line in printed.splitlines() if line.startswith("$ nextscale train")]
    assert all(command.endswith("--seed 1") for command in commands)  # typed last: it wins over flags after --
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["d1", "d1-seed1", "d2", "d2-seed1"]
    recorded = json.loads((out / "sweep.json").read_text())
    assert recorded["depths"] == [1, 2] and recorded["seeds"] == [0, 1]
    rows = _points(out / "points.csv")
    assert [(row["run"], row["depth"], row["seed"]) for row in rows] == [
        ("d1", "1", "0"),
        ("d1-seed1", "1", "1"),
        ("d2", "2", "0"),
        ("d2-seed1", "2", "1"),
    ]
    config = json.loads((out / "runs" / "d2-seed1" / "config.json").read_text())
    assert config["train"]["seed"] == 1
    assert (out / "runs" / "d1" / "metrics.jsonl").read_text() == (
        finished_sweep / "runs" / "d1" / "metrics.jsonl"
    ).read_text()  # the base seed's finished run is left alone


def test_two_seeds_differ_and_the_same_seed_repeats(seeded_sweep, sweep_argv, tmp_path, capsys):
    runs = seeded_sweep.out / "runs"
    # another seed: other initial weights and data order, so other held-out losses and other final weights
    assert _evals(runs / "d1") != _evals(runs / "d1-seed1")
    assert not _same_weights(_weights(runs / "d1"), _weights(runs / "d1-seed1"))
    # the same seed in a new sweep (without the base seed's runs): the same run, bit for bit
    fresh = tmp_path / "fresh"
    assert main(sweep_argv(fresh, [1], settings=(*SWEEP_SETTINGS, "--seeds", "1"))) == 0
    assert sorted(path.name for path in (fresh / "runs").iterdir()) == ["d1-seed1"]
    assert _evals(fresh / "runs" / "d1-seed1") == _evals(runs / "d1-seed1")
    assert _same_weights(_weights(fresh / "runs" / "d1-seed1"), _weights(runs / "d1-seed1"))

    # `samples` draws one run per depth: the base seed's, else the lowest seed's
    from nextscale.cli.scaling_samples import sweep_rows

    assert [run_dir.name for _, run_dir, _ in sweep_rows(seeded_sweep.out, False)] == ["d1", "d2"]
    assert [run_dir.name for _, run_dir, _ in sweep_rows(fresh, False)] == ["d1-seed1"]


def test_a_rerun_without_seeds_resumes_every_recorded_seed(seeded_sweep, sweep_argv, tmp_path, capsys):
    out = tmp_path / "sweep"
    shutil.copytree(seeded_sweep.out, out)
    recorded = (out / "sweep.json").read_text()
    assert main(sweep_argv(out, [1, 2])) == 0  # the recorded seeds 0 and 1: nothing left to train
    printed = capsys.readouterr().out
    assert "d1-seed1: finished (3 steps), kept" in printed and "$ nextscale train" not in printed
    assert (out / "sweep.json").read_text() == recorded

    # other settings are refused as before, with any seeds; so is another base seed (a --seed after --)
    longer = SWEEP_SETTINGS[:5] + ("80",) + SWEEP_SETTINGS[6:]
    assert main(sweep_argv(out, [1], settings=(*longer, "--seeds", "2"))) == 2
    assert "--steps 80 (recorded: --steps 3)" in capsys.readouterr().err
    assert main(sweep_argv(out, [1], train_flags=[*TRAIN_FLAGS, "--seed", "5"])) == 2
    assert "--seed 5 (recorded: --" in capsys.readouterr().err
    assert main(sweep_argv(out, [1], settings=(*SWEEP_SETTINGS, "--seeds", "-1"))) == 2
    assert "--seeds must be >= 0" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == recorded
    assert len(list((out / "runs").iterdir())) == 4


def test_the_seed_after_the_dashes_is_the_base_seed(token_data, tmp_path):
    import argparse

    from nextscale.cli.scaling import add_arguments, model_inputs, parse_train_flags, plan_run

    tokenizer_dir, tokens, eval_tokens = token_data
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["run", "--out", str(tmp_path), "--depths", "1", "--tokens", str(tokens), "--eval-tokens", str(eval_tokens),
         "--tokenizer", str(tokenizer_dir), "--width-base", "16", "--batch-size", "8", "--steps", "3"]
    )  # fmt: skip
    extra = ["--preset", "tiny", "--seed", "7"]
    inputs = model_inputs(parse_train_flags(args, 1, extra)[1])
    for seed, folder in ((None, "d1"), (7, "d1"), (2, "d1-seed2")):
        argv, _, _ = plan_run(args, 1, extra, inputs, seed)
        assert argv[argv.index("--run-dir") + 1] == str(tmp_path / "runs" / folder)
        assert argv[-2:] == ["--seed", "2" if seed == 2 else "7"]
        assert parse_train_flags(args, 1, extra, seed)[1].seed == (2 if seed == 2 else 7)


def test_fit_reports_points_seeds_and_the_spread_per_depth(seeded_sweep, tmp_path, capsys):
    runs = collect_sweep(seeded_sweep.out)
    expected = fit_power_law([run.params for run in runs], [run.evals[-1].loss for run in runs])
    assert main(["scaling", "fit", "--sweep", str(seeded_sweep.out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_points"] == 4 and result["num_seeds"] == 2
    assert result["alpha"] == pytest.approx(expected.alpha)
    assert result["alpha_stderr"] == pytest.approx(expected.alpha_stderr) and expected.alpha_stderr > 0
    assert result["alpha_ci95"] == pytest.approx(list(expected.alpha_interval()))
    for group, depth in zip(result["per_depth"], (1, 2)):
        losses = [run.evals[-1].loss for run in runs if run.depth == depth]
        assert group["depth"] == depth and group["num_points"] == 2
        assert group["mean"] == pytest.approx(np.mean(losses))
        assert group["std"] == pytest.approx(np.std(losses, ddof=1))

    assert main(["scaling", "fit", "--sweep", str(seeded_sweep.out)]) == 0
    printed = capsys.readouterr().out
    assert "4 points from" in printed and "(standard error); 95 % confidence interval" in printed
    assert "4 runs: 2 depths, 2 seeds; loss per depth across its runs (mean ± std):" in printed
    assert "  d1: " in printed and "(2 runs)" in printed

    # a points.csv written before seeds (no seed column) is still read: the same fit, seeds unknown
    rows = _points(seeded_sweep.out / "points.csv")
    old = tmp_path / "old_points.csv"
    columns = [name for name in rows[0] if name != "seed"]
    old.write_text("\n".join([",".join(columns)] + [",".join(row[c] for c in columns) for row in rows]) + "\n")
    assert main(["scaling", "fit", "--csv", str(old), "--json"]) == 0
    from_old = json.loads(capsys.readouterr().out)
    assert from_old["alpha"] == pytest.approx(expected.alpha) and from_old["num_seeds"] is None
    assert [group["num_points"] for group in from_old["per_depth"]] == [2, 2]  # grouped by its depth column
    pytest.importorskip("matplotlib")
    assert main(["scaling", "plot", "--csv", str(old), "--out", str(tmp_path / "old.png")]) == 0


def test_plot_draws_each_seed_faintly_and_the_mean_with_its_spread(seeded_sweep, tmp_path):
    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import SEED_POINT_ALPHA, draw_scaling
    from nextscale.scaling.sweep import loss_curves

    runs = collect_sweep(seeded_sweep.out)
    figure = draw_scaling([run.row() for run in runs], curves=loss_curves(runs))
    loss_axis = figure.axes[0]
    faint = [points for points in loss_axis.collections if points.get_alpha() == SEED_POINT_ALPHA]
    assert len(faint) == 2 and all(len(points.get_offsets()) == 4 for points in faint)  # L_avg, L_last: every run
    (bars, _, _), _ = loss_axis.containers  # L_avg's error bars (then L_last's)
    means = [np.mean([run.evals[-1].loss for run in runs if run.depth == depth]) for depth in (1, 2)]
    np.testing.assert_allclose(np.asarray(bars.get_ydata(), dtype=float), means)
    legend = [text.get_text() for text in loss_axis.get_legend().get_texts()]
    expected = fit_power_law([run.params for run in runs], [run.evals[-1].loss for run in runs])
    assert f"{expected.formula('N', 'L_avg')}, {expected.alpha_text()}, r = {expected.pearson_r:.3f}" in legend
    assert "L_avg: mean ± std over seeds" in legend
    assert main(["scaling", "plot", "--sweep", str(seeded_sweep.out), "--out", str(tmp_path / "seeds.png")]) == 0
    assert (tmp_path / "seeds.png").stat().st_size > 10_000
