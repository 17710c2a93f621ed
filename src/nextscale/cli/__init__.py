"""The ``nextscale`` command line: one table of sub-commands, each in its own module.

Every command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported
only when their command runs, so ``nextscale --help`` is instant. User errors (bad flags, unreadable
files, components that do not fit) end the process with one readable line and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# command name -> (module under nextscale.cli, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: a labelled sample grid and an editing example from the bundled model"),
    "sample": ("sample", "generate images from a pipeline folder: by class (VAR) or from prompts (STAR)"),
    "edit": ("edit", "inpaint, outpaint, class- or text-edit a real image zero-shot"),
    "convert": ("convert", "convert official VAR or STAR checkpoints into a pipeline folder"),
    "make-scenes": ("make_scenes", "build a captioned Fashion-MNIST scenes folder (64x64, 1-4 items)"),
    "train-tokenizer": ("train_tokenizer", "train the multi-scale VQ-VAE tokenizer (stage 1); re-run to resume"),
    "tokenize": ("tokenize", "encode a dataset once into token shards for transformer training"),
    "train": ("train", "train the next-scale transformer (stage 2) on a frozen tokenizer; re-run to resume"),
    "evaluate": (
        "evaluate",
        "FID, precision/recall and class consistency of a model's samples; prompt adherence for text models",
    ),
    "export": ("export", "write a training run's EMA (or raw) weights as a pretrained folder"),
    "plot": ("plot", "draw a training run's loss / per-scale curves into a PNG"),
}


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextscale",
        description="Scale-wise autoregressive image generation (VAR / STAR): sample, edit, train, evaluate.",
        epilog="Run `nextscale COMMAND --help` for the options of one command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(f"nextscale.cli.{module_name}")
        command_parser = sub.add_parser(
            name,
            help=summary,
            description=(module.__doc__ or summary).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # Hugging Face's per-file "Loading weights" bars say nothing to a user of a local text encoder.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (CommandError, ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        if args.verbose:
            raise
        print(f"nextscale {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nextscale {args.command}: interrupted", file=sys.stderr)
        return 130
