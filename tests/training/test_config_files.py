"""Every run file in configs/ is read without error by the command it names, and states what STYLE asks of it:
the command, the hardware and the expected result."""

import json
import shlex
from pathlib import Path

import pytest

from nextscale.cli import build_parser
from nextscale.training.options import read_run_file

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.json"))


def command_parser(subcommand: str):
    subparsers = next(action for action in build_parser()._actions if action.dest == "command")
    return subparsers.choices[subcommand]


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_run_file_is_read_by_the_command_it_names(path):
    run_file = json.loads(path.read_text())
    assert {"description", "command", "hardware", "expected", "args"} <= set(run_file)
    steps = [shlex.split(step) for step in run_file["command"].split("&&")]
    own = [words for words in steps if f"configs/{path.name}" in words]
    assert len(own) == 1, f"{path.name}: its command never passes --config configs/{path.name}"
    words = own[0]
    subcommand = words[words.index("nextscale") + 1]
    values = read_run_file(path, command_parser(subcommand))
    assert values and set(values) == set(run_file["args"])
