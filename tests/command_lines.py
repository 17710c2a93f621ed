"""For the tests of documented commands: does a `nextscale ...` line parse, with every flag spelled out?"""

import argparse
import contextlib
import functools
import io
import shlex

import pytest

from nextscale.cli import build_parser

parser_once = functools.cache(build_parser)


def assert_command_parses(where: str, command: str) -> None:
    """``command`` (what follows `nextscale`) parses with the real parser, has no unknown flags, and spells every flag
    out: argparse also takes a prefix of a flag (`--num-image`), which a document should not rely on."""
    parser, errors = parser_once(), io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            _, unknown = parser.parse_known_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"{where}: `nextscale {command}` does not parse: {errors.getvalue().strip()}")
    assert not unknown, f"{where}: `nextscale {command}` has flags no command takes: {unknown}"
    words = shlex.split(command)
    words = words[: words.index("--")] if "--" in words else words  # after `--`: another command's flags
    flags = {word.split("=")[0] for word in words if word.startswith("--")}
    spelled_out = option_strings(parser)
    assert flags <= spelled_out, f"{where}: `nextscale {command}` abbreviates {flags - spelled_out}"


@functools.cache
def option_strings(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every flag of the parser and of its sub-commands, at any depth."""
    found = set()
    for action in parser._actions:
        found |= set(action.option_strings)
        for subparser in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            found |= option_strings(subparser)
    return frozenset(found)
