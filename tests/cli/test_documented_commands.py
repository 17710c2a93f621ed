"""What the documentation says about the commands holds: every complete `nextscale ...` command in the README, the
docs, the run files and the commands' --help examples parses with today's flags, and a default --help states is the
one the command uses (the demo's seed)."""

import functools
import importlib
import json
import re
from pathlib import Path

import pytest

from command_lines import assert_command_parses
from nextscale.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
CODE_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
COMMAND = re.compile(r"(?:^\s*(?:\S*/)?|\s-m )nextscale\s+(\S.*)")  # nextscale, .venv/bin/nextscale, -m nextscale


def documented_commands() -> list[tuple[str, str]]:
    """(where, command line after `nextscale`) of every command in a code block, a run file or a --help example."""
    texts = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        blocks = CODE_BLOCK.findall(path.read_text())
        texts += [(str(path.relative_to(ROOT)), block) for block in blocks]
    for path in sorted((ROOT / "configs").glob("*.json")):
        texts += [(path.name, step) for step in json.loads(path.read_text())["command"].split("&&")]
    for name, (module, _) in COMMANDS.items():
        doc = importlib.import_module(f"nextscale.cli.{module}").__doc__ or ""
        # examples are the indented lines; prose mentions commands in backquotes, often as fragments
        texts += [
            (f"nextscale {name} --help", line) for line in doc.replace("\\\n", " ").splitlines() if line[:4] == "    "
        ]
    found = []
    for where, text in texts:
        for line in text.replace("\\\n", " ").splitlines():
            line = re.split(r"\s#\s|\s#$|\s&&\s|\s\|\s", line)[0]  # a comment, a chained or piped command
            match = COMMAND.search(line)
            # "..." and "[...]" mark placeholders: such lines are shapes of a command, not commands
            if match and "..." not in line and " [" not in line:
                found.append((where, match.group(1).strip()))
    return found


COMMAND_LINES = documented_commands()
parser_once = functools.cache(build_parser)  # parsing leaves the parser as it was


def test_the_documentation_has_commands_to_check():
    assert len(COMMAND_LINES) > 100
    assert {where.split()[0] for where, _ in COMMAND_LINES} >= {"README.md", "nextscale"}


@pytest.mark.parametrize(("where", "command"), COMMAND_LINES, ids=[f"{w}: {c[:60]}" for w, c in COMMAND_LINES])
def test_documented_command_parses(where, command):
    assert_command_parses(where, command)


def test_demo_without_seed_is_seed_0_as_its_help_says(tiny_pipeline_dir, tmp_path, capsys):
    """The demo draws column j of its grids with seed + j from 0: repeatable, not random."""
    seed_help = next(a.help for a in demo_parser()._actions if "--seed" in a.option_strings)
    assert "default: 0" in seed_help and "random" not in seed_help.split("default")[-1]
    base = ["demo", "--model", str(tiny_pipeline_dir), "--no-text", "--class", "0", "--seeds", "1", "--zoom", "1"]
    assert main([*base, "--out-dir", str(tmp_path / "unseeded")]) == 0
    assert main([*base, "--seed", "0", "--out-dir", str(tmp_path / "seed0")]) == 0
    for name in ("samples.png", "inpaint.png"):
        assert (tmp_path / "unseeded" / name).read_bytes() == (tmp_path / "seed0" / name).read_bytes()


def demo_parser():
    subparsers = next(action for action in build_parser()._actions if action.dest == "command")
    return subparsers.choices["demo"]
