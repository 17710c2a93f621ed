"""--eval-every typed at the value it defaults to is the setting of leaving it out when a sweep is re-run."""

import json
import shutil

from tiny_sweep import SWEEP_SETTINGS

from nextscale.cli import main
from nextscale.cli.scaling_settings import setting_differences

# the tiny sweep's settings without --eval-every: 3 steps derive --eval-every 1 (3 / 10, rounded up), as typed
WITHOUT_EVAL_EVERY = SWEEP_SETTINGS[: SWEEP_SETTINGS.index("--eval-every")]


def _copy(finished_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished_sweep, out)
    return out


def test_leaving_out_an_eval_every_typed_at_its_default_resumes(finished_sweep, sweep_argv, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    assert json.loads((out / "sweep.json").read_text())["eval_every"] == 1
    assert main(sweep_argv(out, [1, 2], settings=WITHOUT_EVAL_EVERY)) == 0
    printed = capsys.readouterr().out
    assert "d1: finished (3 steps), kept" in printed and "d2: finished (3 steps), kept" in printed
    assert "$ nextscale train" not in printed
    # a typed value other than the derived one is still another setting
    assert main(sweep_argv(out, [1, 2], settings=(*WITHOUT_EVAL_EVERY, "--eval-every", "2"))) == 2
    assert "--eval-every 2 (recorded: no --eval-every)" in capsys.readouterr().err


def test_typing_the_default_of_a_sweep_made_without_it_resumes(finished_sweep, sweep_argv, tmp_path, capsys):
    out = _copy(finished_sweep, tmp_path)
    record = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps({**record, "eval_every": None}))  # as made without --eval-every
    assert main(sweep_argv(out, [1, 2])) == 0  # typed --eval-every 1, the derived value
    printed = capsys.readouterr().out
    assert "d1: finished (3 steps), kept" in printed and "$ nextscale train" not in printed
    assert main(sweep_argv(out, [1, 2], settings=(*WITHOUT_EVAL_EVERY, "--eval-every", "3"))) == 2
    assert "--eval-every 3 (recorded: --eval-every 1)" in capsys.readouterr().err


def test_one_typed_value_cannot_stand_for_defaults_that_differ_by_depth():
    # a compute budget gives each depth its own steps, so left out --eval-every is 3 for one run and 5 for another
    assert setting_differences({"eval_every": None}, {"eval_every": 3}, frozenset({3, 5})) == [
        "--eval-every 3 (recorded: no --eval-every)"
    ]
    assert setting_differences({"eval_every": None}, {"eval_every": 3}, frozenset({3})) == []
    assert setting_differences({"eval_every": 5}, {"eval_every": None}, frozenset({5})) == []
    assert setting_differences({"eval_every": 4}, {"eval_every": None}, frozenset({5})) != []
