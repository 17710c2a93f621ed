"""The written claims point at real things: every repository path the README, docs/*.md, benchmarks/RESULTS.md and the
model cards name exists, and every `nextscale ...` command written inline (tables, prose) or in a model card's code
block parses with today's flags, spelled out (argparse would take a prefix). (tests/cli/test_documented_commands.py
checks the code blocks of README and docs/.)"""

import re
from pathlib import Path

import pytest

from command_lines import assert_command_parses

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "benchmarks" / "RESULTS.md",
    *sorted((ROOT / "src" / "nextscale" / "assets").glob("*/MODEL_CARD.md")),
]
# a path inside the repository: a top-level folder of it, then file or folder names (globs and {a,b} allowed)
REPO_PATH = re.compile(r"(?<![\w./-])((?:benchmarks|configs|docs|scripts|src|tests)/[\w./{},*-]*[\w*}])")
INLINE_COMMAND = re.compile(r"`(?:[^`]*\s-m |\.venv/bin/)?nextscale\s+([^`]+)`")
CODE_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def named_paths() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for match in REPO_PATH.finditer(document.read_text()):
            path = match.group(1)
            if "MODEL" in path or "NAME" in path:  # placeholders: `table3/{classifier,inception}_MODEL.json`
                continue
            found.append((document.name, path))
    return found


def expand(path: str) -> list[str]:
    """`a/{b,c}.txt` -> [`a/b.txt`, `a/c.txt`]."""
    match = re.match(r"(.*?)\{(.*?)\}(.*)", path)
    if not match:
        return [path]
    return [name for part in match.group(2).split(",") for name in expand(match.group(1) + part + match.group(3))]


def inline_commands() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        pieces = [match.group(1) for match in INLINE_COMMAND.finditer(CODE_BLOCK.sub("", text))]
        if document.name == "MODEL_CARD.md":  # their code blocks are not in test_documented_commands.py
            for block in CODE_BLOCK.findall(text):
                lines = block.replace("\\\n", " ").splitlines()
                pieces += [line.split("nextscale", 1)[1] for line in lines if line.startswith("nextscale ")]
        for piece in pieces:
            command = re.split(r"\s#\s|\s#$|\s&&\s", piece)[0].strip()
            # "...", "…", "[...]" and "|" mark shapes of a command; prose names a flag alone (`nextscale edit --box`)
            if not any(mark in command for mark in ("...", "…", " [", "|")) and len(command.split()) > 2:
                found.append((document.name, command))
    return found


PATHS, COMMANDS = named_paths(), inline_commands()


def test_the_documents_name_paths_and_commands():
    assert len(PATHS) > 50 and len(COMMANDS) > 10
    assert {"README.md", "RESULTS.md", "REPRODUCTION.md", "MODEL_CARD.md"} <= {where for where, _ in PATHS}


@pytest.mark.parametrize(("where", "path"), PATHS, ids=[f"{w}: {p}" for w, p in PATHS])
def test_named_path_exists(where, path):
    for name in expand(path):
        assert list(ROOT.glob(name)), f"{where} names {name}, which is not in the repository"


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w}: {c[:60]}" for w, c in COMMANDS])
def test_inline_command_parses(where, command):
    assert_command_parses(where, command)
