"""What a sweep counts and refuses: unfinished runs, the planned N, settings of a re-run, flags after `--`,
Ctrl-C, degenerate fits, the compute-frontier fit and the figure's tick labels."""

import csv
import json
import math
import shutil
import warnings

import numpy as np
import pytest
from tiny_sweep import SWEEP_SETTINGS, TRAIN_FLAGS

from nextscale.cli import main
from nextscale.scaling.power_law import fit_pareto_frontier, fit_power_law
from nextscale.scaling.sweep import collect_sweep, loss_curves, read_run, write_points


def _copy(finished_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished_sweep, out)
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----------------------------------------------------------------------------------------- unfinished runs
def test_fit_and_plot_leave_out_unfinished_runs(finished_sweep, token_data, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    tokenizer, tokens, eval_tokens = token_data
    # d3 as a killed sweep leaves it: evaluated and checkpointed at step 1 of its planned 3
    train = ["train", "--tokenizer", str(tokenizer), "--tokens", str(tokens), "--eval-tokens", str(eval_tokens)]
    train += ["--run-dir", str(out / "runs" / "d3"), "--depth", "3", "--embed-dim", "48", "--batch-size", "8"]
    assert main([*train, "--steps", "3", "--eval-every", "1", "--max-steps", "1", *TRAIN_FLAGS]) == 0
    write_points(out, collect_sweep(out))
    capsys.readouterr()

    finished = [run.row() for run in collect_sweep(out) if run.run != "d3"]
    expected = fit_power_law([row["params"] for row in finished], [row["loss"] for row in finished])
    for source in (["--sweep", str(out)], ["--csv", str(out / "points.csv")]):
        assert main(["scaling", "fit", *source, "--json"]) == 0
        captured = capsys.readouterr()
        result = json.loads(captured.out)
        assert {key: result[key] for key in ("alpha", "beta", "pearson_r", "num_points")} == {
            "alpha": pytest.approx(expected.alpha),
            "beta": pytest.approx(expected.beta),
            "pearson_r": pytest.approx(expected.pearson_r),
            "num_points": 2,
        }
        assert result["alpha_stderr"] is None and result["alpha_ci95"] is None  # 2 points: no degrees of freedom
        assert "left out d3: unfinished (1 of 3 steps)" in captured.err

    # a run that logged its last evaluation but was killed before its checkpoint does not count either
    shutil.rmtree(out / "runs" / "d2" / "checkpoints")
    assert not read_run(out / "runs" / "d2").finished
    pytest.importorskip("matplotlib")
    assert main(["scaling", "plot", "--sweep", str(out)]) == 2  # one finished run: no figure
    err = capsys.readouterr().err
    assert "left out d2: unfinished (0 of 3 steps)" in err and "at least 2 points" in err.splitlines()[-1]
    assert not (out / "scaling.png").exists()


# ------------------------------------------------------------------------------------------- planned N
def test_compute_budget_plans_with_the_trained_model(sweep_argv, tmp_path, capsys):
    out = tmp_path / "sweep"
    budget = 2e7
    settings = ("--width-base", "16", "--batch-size", "8", "--compute-budget", str(budget), "--eval-every", "1")
    # no --preset: var-d16's 1000 classes must give way to the data's 10, as in `nextscale train`
    flags = [flag for flag in TRAIN_FLAGS if flag not in ("--preset", "tiny")]
    assert main(sweep_argv(out, [1], settings=settings, train_flags=flags)) == 0
    printed = capsys.readouterr().out
    planned = int(printed.split("d1: N = ")[1].split(" parameters")[0].replace(",", ""))
    with open(out / "points.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert planned == int(row["params"]) == read_run(out / "runs" / "d1").params
    per_step = 6 * planned * 8 * 21
    assert abs(float(row["compute"]) - budget) <= per_step / 2  # the budget, to the nearest whole step


# --------------------------------------------------------------------------------- settings of a re-run
def test_a_rerun_with_other_settings_is_refused_and_writes_nothing(finished_sweep, sweep_argv, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    recorded = (out / "sweep.json").read_text()
    other = ("--width-base", "8", "--batch-size", "4", "--steps", "10", "--eval-every", "1")
    assert main(sweep_argv(out, [5], settings=other, train_flags=[*TRAIN_FLAGS, "--lr", "1e-2"])) == 2
    err = _one_line_error(capsys)
    for named in ("--width-base 8 (recorded: --width-base 16)", "--batch-size 4 (recorded: --batch-size 8)"):
        assert named in err
    assert "--steps 10 (recorded: --steps 3)" in err and "--lr 1e-2 (recorded: --" in err
    # a budget alone, and depths that are no depths: refused before sweep.json is touched
    longer = SWEEP_SETTINGS[:5] + ("80",) + SWEEP_SETTINGS[6:]
    assert main(sweep_argv(out, [1, 2], settings=longer)) == 2
    err = _one_line_error(capsys)
    assert "--steps 80 (recorded: --steps 3)" in err and "width-base" not in err
    assert main(sweep_argv(out, [-1, 0])) == 2
    assert "depths must be >= 1" in _one_line_error(capsys)
    assert (out / "sweep.json").read_text() == recorded
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["d1", "d2"]
    # the recorded settings still resume (nothing to train)
    assert main(sweep_argv(out, [1, 2])) == 0
    assert json.loads((out / "sweep.json").read_text())["depths"] == [1, 2]


# ------------------------------------------------------------------------------- flags after --, Ctrl-C
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-steps", "1"], "--max-steps is set by the sweep itself: use `scaling run --steps`"),
        (["--eval-every", "5"], "--eval-every is set by the sweep itself: use `scaling run --eval-every`"),
        (["--num-heads", "2"], "--num-heads is set by the sweep itself: the depth rule"),
    ],
)
def test_flags_the_sweep_owns_are_refused_naming_the_right_flag(sweep_argv, tmp_path, capsys, flags, message):
    assert main(sweep_argv(tmp_path / "sweep", [1], train_flags=[*TRAIN_FLAGS, *flags])) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "sweep").exists()


def test_a_run_file_may_not_set_what_the_sweep_owns(sweep_argv, tmp_path, capsys):
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"args": {"max_steps": 1}}))
    assert main(sweep_argv(tmp_path / "sweep", [1], train_flags=[*TRAIN_FLAGS, "--config", str(run_file)])) == 2
    assert "sets max-steps, which the sweep sets itself" in _one_line_error(capsys)


def test_ctrl_c_says_interrupted_and_how_to_resume(sweep_argv, tmp_path, capsys, monkeypatch):
    from nextscale.training.interrupt import TrainingInterrupted
    from nextscale.training.loop import Trainer

    def interrupted(self, max_steps=None):
        raise TrainingInterrupted(1, None)

    monkeypatch.setattr(Trainer, "fit", interrupted)
    assert main(sweep_argv(tmp_path / "sweep", [1, 2])) == 130
    err = capsys.readouterr().err
    assert "interrupted in the run of depth 1" in err and "re-run the same `nextscale scaling run` command" in err
    assert "failed" not in err


# ------------------------------------------------------------------------------------------- degenerate fits
def test_a_degenerate_fit_is_refused_without_numpy_warnings(tmp_path, capsys):
    x = np.array([1e4, 2e4, 4e4])
    y = 3.0 * (x / 1e4) ** 0.00024 * np.array([1.0, 1.0001, 1.0])  # α ≈ 2.4e-4: β = exp(a / α) overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="degenerate"):
            fit_power_law(x, y)
    table = tmp_path / "points.csv"
    table.write_text("params,compute,loss\n" + "".join(f"{n},{6 * n * 1e6},{v!r}\n" for n, v in zip(x, y)))
    assert main(["scaling", "fit", "--csv", str(table), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "degenerate" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "Warning" not in captured.err


def test_plot_refuses_a_single_point(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    table = tmp_path / "points.csv"
    table.write_text("run,params,compute,loss\nd1,1e4,1e9,3.0\n")
    assert main(["scaling", "plot", "--csv", str(table), "--out", str(tmp_path / "fig.png")]) == 2
    assert "at least 2 points" in _one_line_error(capsys)
    assert not (tmp_path / "fig.png").exists()


# ------------------------------------------------------------------------------------ the frontier fit
def test_fit_frontier_reproduces_the_figure_legend(finished_sweep, capsys):
    runs = collect_sweep(finished_sweep)
    points = [point for curve in loss_curves(runs).values() for point in curve]
    assert len(points) == 6  # every evaluation of both runs, not only their final points
    expected = fit_pareto_frontier(*zip(*points))
    assert main(["scaling", "fit", "--sweep", str(finished_sweep), "--frontier", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["alpha"] == expected.alpha and result["beta"] == expected.beta
    assert result["pearson_r"] == expected.pearson_r and result["alpha_stderr"] == expected.alpha_stderr
    assert result["num_points"] == expected.num_points and result["alpha_ci95"] == list(expected.alpha_interval())
    assert main(["scaling", "fit", "--sweep", str(finished_sweep), "--frontier"]) == 0
    assert "on the compute Pareto frontier of 6 evaluations of 2 runs" in capsys.readouterr().out

    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import draw_scaling

    figure = draw_scaling([run.row() for run in runs], curves=loss_curves(runs))
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    assert f"{expected.formula('C', 'L_avg')}, {expected.alpha_text()}, r = {expected.pearson_r:.3f}" in legend
    assert " ± " in expected.alpha_text()

    assert main(["scaling", "fit", "--sweep", str(finished_sweep), "--frontier", "--x", "params"]) == 2
    assert "--frontier fits loss vs training compute" in _one_line_error(capsys)


# --------------------------------------------------------------------------------------- tick labels
def test_a_log_axis_under_a_decade_labels_few_ticks_that_do_not_overlap():
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from nextscale.scaling.plot import draw_scaling

    params = np.array([1.2e4, 2.5e4, 9e4])  # under one decade: matplotlib labelled 2, 3, 4 and 6 x 10^4
    rows = [
        {"params": n, "compute": 6 * n * 1e6, "loss": (1e-3 * n) ** -0.1, "error": (1e-3 * n) ** -0.05} for n in params
    ]
    figure = draw_scaling(rows)
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes[:2]:  # loss and error vs N
        low, high = axis.get_xlim()
        ticks = [*axis.xaxis.get_major_ticks(), *axis.xaxis.get_minor_ticks()]
        shown = [tick for tick in ticks if tick.label1.get_text() and low <= tick.get_loc() <= high]
        mantissas = sorted(round(tick.get_loc() / 10 ** math.floor(math.log10(tick.get_loc()))) for tick in shown)
        assert mantissas == [2, 5]
        boxes = sorted((box.x0, box.x1) for box in (tick.label1.get_window_extent(renderer) for tick in shown))
        assert all(left[1] < right[0] for left, right in zip(boxes, boxes[1:]))
