"""A re-run whose flags after `--` only spell the recorded ones differently resumes; a NaN or non-positive value
in a fitted or plotted table is refused naming its row."""

import json
import math
import shutil

import pytest
from tiny_sweep import TRAIN_FLAGS

from nextscale.cli import main


def _copy(finished_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished_sweep, out)
    return out


def _respelled(flags: tuple[str, ...], **values: str) -> list[str]:
    """``flags`` with the value of each named flag replaced, as FLAG VALUE or FLAG=VALUE (a value with '=')."""
    out, skip = [], False
    for flag in flags:
        if skip:
            skip = False
            continue
        name = flag.removeprefix("--").replace("-", "_")
        if name in values:
            value = values[name]
            out += [f"{flag}{value}"] if value.startswith("=") else [flag, value]
            skip = True
            continue
        out.append(flag)
    return out


@pytest.mark.parametrize(
    "respelled",
    [
        _respelled(TRAIN_FLAGS, lr="0.003"),  # recorded as 3e-3
        _respelled(TRAIN_FLAGS, lr="=3e-3", preset="=tiny"),
        [*TRAIN_FLAGS[2:], *TRAIN_FLAGS[:2]],  # the same flags in another order
    ],
)
def test_a_rerun_with_flags_spelled_otherwise_resumes(finished_sweep, sweep_argv, tmp_path, capsys, respelled):
    out = _copy(finished_sweep, tmp_path)
    assert respelled != list(TRAIN_FLAGS)
    assert main(sweep_argv(out, [1, 2], train_flags=respelled)) == 0
    printed = capsys.readouterr().out
    assert "d1: finished (3 steps), kept" in printed and "d2: finished (3 steps), kept" in printed
    assert "$ nextscale train" not in printed  # nothing retrained


def test_a_flag_typed_at_its_value_elsewhere_still_differs(finished_sweep, sweep_argv, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    recorded = (out / "sweep.json").read_text()
    assert main(sweep_argv(out, [1, 2], train_flags=_respelled(TRAIN_FLAGS, lr="1e-2"))) == 2
    err = capsys.readouterr().err
    assert "-- --preset tiny --lr 1e-2 --warmup" in err and "(recorded: -- --preset tiny --lr 3e-3 --warmup" in err
    assert err.count("[they differ in --lr]") == 1  # named, as a long list of flags hides it
    # typing a flag at its default overrides a --config file where leaving it out does not: not the same settings
    assert main(sweep_argv(out, [1, 2], train_flags=[*TRAIN_FLAGS, "--seed", "0"])) == 2
    err = capsys.readouterr().err
    assert "--seed 0 (recorded: --" in err and "[they differ in --seed]" in err
    assert (out / "sweep.json").read_text() == recorded


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("run,params,loss\nd1,1e5,3.0\nd2,2e5,nan\nd3,4e5,2.5\n", "row 2 (run d2): column 'loss' holds 'nan'"),
        ("params,loss\n1e5,3.0\n2e5,2.8\n4e5,inf\n", "row 3 (params 4e5): column 'loss' holds 'inf'"),
        ("params,loss\n1e5,3.0\n-2e5,2.8\n4e5,2.5\n", "row 2: column 'params' holds '-2e5'; a power law takes logs"),
    ],
)
@pytest.mark.parametrize("command", ["fit", "plot"])
def test_a_bad_value_is_refused_naming_its_row(tmp_path, capsys, content, message, command):
    table = tmp_path / "points.csv"
    table.write_text(content)
    argv = ["scaling", command, "--csv", str(table)] + (["--out", str(tmp_path / "f.png")] if command == "plot" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


def test_a_diverged_run_of_a_sweep_is_named(finished_sweep, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    metrics = out / "runs" / "d2" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    last_eval = max(index for index, record in enumerate(records) if record["split"] == "eval")
    records[last_eval]["loss"] = math.nan  # the run diverged at its last evaluation
    metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
    for argv in (["fit"], ["plot", "--out", str(tmp_path / "f.png")]):
        assert main(["scaling", *argv, "--sweep", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "(run d2): column 'loss' holds nan, not a finite number" in err and len(err.splitlines()) == 1
