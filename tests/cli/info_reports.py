"""What the `nextscale info` tests share: its --json reports, parsed."""

import argparse
import json

from nextscale.cli import info


def facts(capsys, *paths: str) -> list[dict]:
    """`info --json PATH...`'s reports (one JSON object a path; none given: the machine's)."""
    parser = argparse.ArgumentParser()
    info.add_arguments(parser)
    assert info.run(parser.parse_args(["--json", *paths])) == 0
    decoder, text, out, position = json.JSONDecoder(), capsys.readouterr().out, [], 0
    while position < len(text.rstrip()):
        report, position = decoder.raw_decode(text, position)
        out.append(report)
        position += 1
    return out
