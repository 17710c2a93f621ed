"""The ``nextscale`` command line: one table of sub-commands, each in its own module.

Every command module defines ``add_arguments(parser)`` and ``run(args) -> int``; modules are imported
only when their command runs, so ``nextscale --help`` is instant. User errors (bad flags, unreadable
files, components that do not fit, an optional extra not installed, running out of memory) end the process with
one readable line on stderr and exit status 2; ``-v`` shows the traceback instead. Under torchrun that line is
printed once, by rank 0 (see ``print_error``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
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
        "FID, KID, precision/recall and class consistency of a model's samples; held-out test loss per scale "
        "(--loss); prompt adherence for text models",
    ),
    "export": ("export", "write a training run's EMA (or raw) weights as a pretrained folder"),
    "plot": ("plot", "draw a training run's loss / per-scale curves into a PNG"),
    "info": ("info", "what this machine offers, or what a pipeline, run, token folder or checkpoint holds"),
    "scaling": ("scaling", "scaling laws: train a sweep of depths, fit L = (beta X)^alpha, plot loss vs size/compute"),
    "serve": ("serve", "web demo in the browser: class and text to image, and editing (needs nextscale[demo])"),
}


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``nextscale sample: error: ... (see --help)``."""

    def error(self, message: str):
        print_error(f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)")
        sys.exit(2)


# How long a rank > 0 of a torchrun job waits for rank 0's error line before printing its own (see print_error).
# An error every rank meets (a bad flag, a missing folder) reaches rank 0 within about a second of the others.
RANK_ZERO_WAIT_S = 10.0


def print_error(line: str, err: BaseException | None = None) -> None:
    """Print a command's one-line error on stderr, once per torchrun job rather than once per process.

    The ranks of a job parse the same flags and read the same data, so most errors reach every one of them. Rank 0
    prints its line and announces it; another rank prints nothing for the same line, and its own line prefixed with
    its rank (``rank 1: ...``), so that an error only it met stays visible. Rather than exit at once, it waits for
    rank 0's line: torchrun stops every process when one fails, and rank 0 might not have printed yet. An error whose
    class sets ``names_its_rank = True`` (``RankZeroWriteFailed``) is its rank's own line, printed as it is.
    """
    if "RANK" not in os.environ:  # one process: no launcher, nothing to share (and no torch import for a typo)
        print(line, file=sys.stderr, flush=True)
        return
    from nextscale import distributed

    rank = distributed.launch_rank()
    if rank == 0:
        print(line, file=sys.stderr, flush=True)
        distributed.announce_error(line)
    elif getattr(err, "names_its_rank", False):  # its own line already (RankZeroWriteFailed); no torch import
        print(line, file=sys.stderr, flush=True)
    elif distributed.rank_zero_error(RANK_ZERO_WAIT_S) != line:
        print(f"rank {rank}: {line}", file=sys.stderr, flush=True)


def one_line(message: object) -> str:
    """Any message folded onto one line (some library errors span several)."""
    return " ".join(str(message).split())


def error_text(err: BaseException) -> str:
    """The error's own message on one line. An error re-raised from a DataLoader worker carries the worker's
    whole traceback ("Caught ValueError in DataLoader worker process 0. Original Traceback ...: message"):
    it gives just the message, the traceback's last entry."""
    text = str(err)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        # The traceback ends with "ValueError: message" (a module-qualified name for other classes).
        found = list(re.finditer(rf"^(?:[\w.]+\.)?{re.escape(type(err).__name__)}: ", text, re.MULTILINE))
        if found:
            text = text[found[-1].end() :]
    if isinstance(err, OSError) and err.errno in OS_ERROR_FIXES and err.strerror and text.startswith("[Errno"):
        # Python's own "[Errno 28] No space left on device" names neither the file nor what to do
        where = f": {err.filename}" if err.filename else ""
        text = f"{err.strerror}{where}; {OS_ERROR_FIXES[err.errno]}"
    return one_line(text)


# The bare system errors a command meets while writing, with what the user can do about each.
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some space or write to another disk, then run the same command again",
    errno.ENAMETOOLONG: "choose a shorter file name",
    errno.EDQUOT: "free some space under your quota, then run the same command again",
    errno.EROFS: "the file system is read-only: write somewhere else",
}


def is_out_of_memory(err: BaseException) -> bool:
    """torch.OutOfMemoryError (GPU), the CPU allocator's RuntimeError, or MemoryError."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(
        text in str(err) for text in ("can't allocate memory", "out of memory", "not enough memory")
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def stdout_closed() -> bool:
    """Whether standard output's reader has gone (a pipe's other end closed). If so, standard output is pointed at
    the null device, so that Python's flush at exit does not report the broken pipe once more."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()  # the write end of a pipe without readers reports POLLERR
        poller.register(fd, select.POLLERR)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows) or no real stdout (captured in tests)
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed


def unquoted_value_hint(argv: list[str], unknown: list[str]) -> str:
    """ "; quote ..." when the first unrecognized word directly follows the one value of --class or --prompt: the
    shell split a name typed without quotes (`edit --class red apples` for the class "red apples"), else ""."""
    for flag in ("--class", "--prompt"):
        if flag not in argv:
            continue
        words = argv[argv.index(flag) + 1 :]
        words = words[: next((i for i, word in enumerate(words) if word.startswith("-")), len(words))]
        if len(words) > 1 and words[1] == unknown[0]:
            return f'; quote a value with spaces: {flag} "{" ".join(words)}"'
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would send these to the top-level parser, whose --help does not list them
        command = f"nextscale {args.command}" if args.command else "nextscale"
        hint = unquoted_value_hint(sys.argv[1:] if argv is None else argv, unknown)
        print_error(f"{command}: error: unrecognized arguments: {' '.join(unknown)}{hint} (see `{command} --help`)")
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    # Pillow logs every PNG chunk it reads at DEBUG ("STREAM b'IHDR' 16 13"); -v is for nextscale's messages.
    logging.getLogger("PIL").setLevel(logging.WARNING)
    # Hugging Face's per-file "Loading weights" bars say nothing to a user of a local text encoder.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "device", None) is not None:  # every command: a missing GPU is one line, not a traceback
            from nextscale.cli.common import check_device

            check_device(args.device)
        return int(args._run(args) or 0)
    # OSError: missing, unwritable, full disk, ...; ImportError: an optional extra that is not installed
    except (CommandError, ValueError, TypeError, OSError, ImportError) as err:
        if isinstance(err, BrokenPipeError) and stdout_closed():
            return 141  # the reader stopped early (`nextscale info ... | head`): as a shell reports SIGPIPE
        if args.verbose:
            raise
        print_error(f"nextscale {args.command}: error: {error_text(err)}", err)
        return 2
    except (RuntimeError, MemoryError) as err:
        if args.verbose or not is_out_of_memory(err):
            raise
        hint = "lower --batch-size" if hasattr(args, "batch_size") else "use a smaller model or input"
        print_error(f"nextscale {args.command}: error: out of memory ({one_line(err)[:200]}); {hint}")
        return 2
    # A training command's interrupt says what it saved (TrainingInterrupted) or that nothing was, and what re-running
    # the same command does (options.train_in_run_dir); elsewhere nothing is half done.
    except KeyboardInterrupt as err:
        print(f"nextscale {args.command}: {str(err) or 'interrupted'}", file=sys.stderr)
        return 130
