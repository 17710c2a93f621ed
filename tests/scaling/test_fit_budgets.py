"""`scaling fit/plot --csv` refuse tables that join sweeps of different budgets (their rows are not seeds of one
law), and `fit --json` says what it fitted."""

import json

import pytest

from nextscale.cli import main

HEADER = "run,depth,seed,params,batch_size,tokens_per_sample,total_steps,compute,loss,weights,eval_samples,finished"


def _table(tmp_path, rows, name="points.csv"):
    """A points.csv-like table; each row: (depth, seed, total_steps, compute, eval_samples)."""
    lines = [HEADER]
    for depth, seed, steps, compute, samples in rows:
        params = 1000 * depth**2
        loss = 5.0 * params**-0.05
        lines.append(f"d{depth},{depth},{seed},{params},16,130,{steps},{compute},{loss},raw,{samples},True")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


ONE_SWEEP = [(1, 0, 80, 1e9, 200), (2, 0, 80, 4e9, 200), (3, 0, 80, 9e9, 200)]


@pytest.mark.parametrize("action", ["fit", "plot"])
def test_rows_of_different_step_counts_are_refused(tmp_path, capsys, action):
    mixed = _table(tmp_path, [*ONE_SWEEP, (1, 0, 300, 3e9, 200)])
    argv = ["scaling", action, "--csv", str(mixed)] + (["--out", str(tmp_path / "f.png")] if action == "plot" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "total_steps 80 vs 300" in err and "fit one sweep's points.csv at a time" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "f.png").exists()


def test_other_held_out_counts_and_repeated_seeds_are_refused(tmp_path, capsys):
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, [*ONE_SWEEP[:2], (3, 0, 80, 9e9, 50)]))]) == 2
    assert "eval_samples 50 vs 200" in capsys.readouterr().err
    # the same depth and seed twice, at one budget: two sweeps, not two seeds
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, [*ONE_SWEEP, (2, 0, 80, 4e9, 200)]))]) == 2
    assert "rows 2 and 4" in capsys.readouterr().err


def test_a_compute_budget_sweep_with_its_own_steps_per_depth_fits(tmp_path, capsys):
    iso_flop = [(1, 0, 900, 9.0e9, 200), (2, 0, 225, 9.02e9, 200), (3, 0, 100, 8.98e9, 200)]
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, iso_flop))]) == 0
    assert "raw weights, 200 held-out sequences each" in capsys.readouterr().out


def test_fit_json_says_what_was_fitted(tmp_path, capsys):
    table = _table(tmp_path, ONE_SWEEP)
    assert main(["scaling", "fit", "--csv", str(table), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    fitted = {key: result[key] for key in ("x", "y", "weights", "eval_samples", "source")}
    assert fitted == {"x": "params", "y": "loss", "weights": "raw", "eval_samples": 200, "source": str(table)}
    assert main(["scaling", "fit", "--csv", str(table), "--x", "compute", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["x"] == "compute"
    four = _table(tmp_path, [*ONE_SWEEP, (4, 0, 80, 16e9, 200)], name="four.csv")
    assert main(["scaling", "fit", "--csv", str(four), "--irreducible", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["source"], result["eval_samples"], result["weights"]) == (str(four), 200, "raw")
