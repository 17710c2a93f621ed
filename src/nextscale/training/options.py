"""Command-line flags shared by the training commands, parsed into ``TrainConfig``; run files.

Every flag is kebab-case with a help string. ``--config FILE.json`` reads a run file from ``configs/``
whose ``"args"`` hold flag names without the dashes; each value is read as its flag reads what you type (a
JSON string or number is that text, so 4.5 is no integer), and a file that breaks this is refused in one line
naming it, the key and what the flag takes. One precedence rule holds for every option (see
``PRECEDENCE_HELP``): the command line, then the run file, then the default (for shape options, the
preset's). "Typed on the command line" is recorded while parsing (``record_given_options``), never guessed
by comparing a value with its default, so ``--lr-schedule lin0`` or ``--disc-start none`` win over the file
even when they equal the default.

The data flags' specs and datasets are in ``nextscale.training.data_specs``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextscale.training.config import PRECISIONS, TrainConfig

if TYPE_CHECKING:  # the flag parsing stays free of torch, so `nextscale train --help` answers at once
    from nextscale.distributed import DistInfo


GIVEN = "_given_on_command_line"  # namespace attribute: the dests typed on the command line
FROM_FILE = "_given_in_run_file"  # namespace attribute: the dests the --config run file set
PRECEDENCE_HELP = """\
option precedence, the same for every option:
  1. the command line: a flag you type always wins, also when its value equals the default or is 'none'
  2. the --config run file's "args"
  3. the default shown in --help (for shape options: the preset's)
Typing any data flag ({data_flags}) replaces all of the run file's data flags, and
what follows from the data ({data_dependent}) is then inferred from your data unless you type it;
a typed value that contradicts the data is an error."""


def record_given_options(parser: argparse.ArgumentParser) -> None:
    """Make every argument added to ``parser`` from now on record its dest in ``args.<GIVEN>`` when typed.

    Call it before adding arguments; argument groups share the parser's action registry.
    """
    for name in (None, "store", "store_true", "store_false", "store_const", "append"):
        base = parser._registry_get("action", name, name)
        if isinstance(base, type) and not getattr(base, "records_given", False):
            parser.register("action", name, _recording(base))


def _recording(base: type[argparse.Action]) -> type[argparse.Action]:
    class Recording(base):
        records_given = True

        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            # A new frozenset each time: never mutate a set shared with another namespace.
            setattr(namespace, GIVEN, frozenset(getattr(namespace, GIVEN, frozenset())) | {self.dest})

    Recording.__name__ = f"Recording{base.__name__}"
    return Recording


def given_options(args: argparse.Namespace) -> frozenset[str]:
    """The dests typed on the command line (needs ``record_given_options`` on the parser)."""
    return frozenset(getattr(args, GIVEN, frozenset()))


def chosen_options(args: argparse.Namespace) -> frozenset[str]:
    """The dests the user set: typed on the command line or given by the --config run file (not defaults)."""
    return given_options(args) | frozenset(getattr(args, FROM_FILE, frozenset()))


def optional_float(text: str) -> float | None:
    """argparse type: a float, or "none" for off."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from err


def optional_int(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from err


def lr_schedule_name(text: str) -> str:
    """argparse type: lin0, cos, constant or lin<T> (0 < T < 1, VAR's schedule under progressive training)."""
    from nextscale.training.schedules import check_lr_schedule

    try:
        return check_lr_schedule(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (steps, batch sizes, intervals), refused while parsing, before any work."""
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from err
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def optional_positive_int(text: str) -> int | None:
    """argparse type: a whole number >= 1, or "none" for off."""
    return None if text.lower() == "none" else positive_int(text)


def int_tuple(text: str) -> tuple[int, ...]:
    """argparse type: "1,2,4" -> (1, 2, 4); every value a whole number >= 1 (scale sides, channel multipliers)."""
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4, got {text!r}") from err
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"every value must be a whole number >= 1 (like 1,2,4), got {text!r}")
    return values


MAX_CROP_MARGIN = 2.0  # a resized side twice the crop keeps only the middle half of each image: surely a typo


def crop_margin_ratio(text: str) -> float:
    """argparse type: a crop margin R from 1 (no margin) to ``MAX_CROP_MARGIN``, the ratio of the resized shorter
    side to the crop (see ``nextscale.training.crop_margin``); refused while parsing, before any work."""
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number like 1.0 or 1.125, got {text!r}") from err
    if not 1.0 <= value <= MAX_CROP_MARGIN:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be from 1 (no margin: the crop keeps the whole shorter side) to {MAX_CROP_MARGIN:g} (VAR: 1.125), "
            f"got {text}"
        )
    return value


# What a flag's type accepts, in words, for run-file errors; COMMA_TYPES also take a JSON list.
TYPE_WORDS = {
    int: "an integer",
    float: "a number",
    optional_int: 'an integer or "none"',
    positive_int: "a whole number >= 1",
    optional_positive_int: 'a whole number >= 1 or "none"',
    optional_float: 'a number or "none"',
    int_tuple: 'whole numbers >= 1 like [1, 2, 4] or "1,2,4"',
    crop_margin_ratio: f"a number from 1 to {MAX_CROP_MARGIN:g}",
    lr_schedule_name: 'one of "lin0", "cos", "constant" or "lin<T>" with 0 < T < 1 (e.g. "lin0.8")',
}
COMMA_TYPES = (int_tuple,)


def add_run_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """--config, --run-dir, the data spec, and every TrainConfig field as a flag (defaults from ``defaults``)."""
    d = defaults
    parser.add_argument("--config", help="JSON run file from configs/ whose 'args' set the defaults of these flags")
    parser.add_argument("--run-dir", help="run directory (created; re-running the same command resumes from it)")
    group = parser.add_argument_group("optimisation")
    group.add_argument(
        "--steps", type=positive_int, default=None, help="optimizer steps of the whole run (overrides --epochs)"
    )
    group.add_argument("--epochs", type=float, default=None, help="length of the run in passes over the data")
    group.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help="global batch (all GPUs, all micro-steps)"
    )
    group.add_argument(
        "--grad-accum",
        type=positive_int,
        default=d.grad_accum,
        help="micro-batches per optimizer step (the same samples in the same order as without it, except at epoch "
        "ends: an epoch drops its last partial micro-batch, so a step may span two epochs)",
    )
    group.add_argument(
        "--base-lr",
        type=float,
        default=d.base_lr,
        help=f"lr per 256 samples (default {d.base_lr:g}): peak lr = base-lr x batch-size / 256, VAR's rule "
        "(1e-4 gives 3e-4 at batch 768 but 3.1e-06 at batch 8, too low for a small run); --lr replaces it",
    )
    group.add_argument(
        "--lr",
        type=optional_float,
        default=d.lr,
        help=(
            "peak lr, set directly instead of the --base-lr rule (default none: the rule); small runs here learn "
            "with 1e-3 to 3e-3"
            if d.lr is None
            else f"peak lr, set directly (default {d.lr:g}); 'none' applies the --base-lr rule"
        ),
    )
    group.add_argument(
        "--lr-schedule",
        type=lr_schedule_name,
        default=d.lr_schedule,
        help="lr shape: lin0 (VAR), cos, constant, or lin<T> (e.g. lin0.8: VAR's with --progressive 0.8)",
    )
    group.add_argument("--warmup", type=float, default=d.warmup, help="warm-up steps (>= 1) or fraction (< 1)")
    group.add_argument("--end-lr-factor", type=float, default=d.end_lr_factor, help="lr factor at the end (VAR wpe)")
    group.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay (tensor rule)")
    group.add_argument(
        "--weight-decay-end",
        type=optional_float,
        default=d.weight_decay_end,
        help="final weight decay of a cosine ramp ('none': constant)",
    )
    group.add_argument("--betas", type=float, nargs=2, default=list(d.betas), help="AdamW betas")
    group.add_argument("--grad-clip", type=optional_float, default=d.grad_clip, help="max grad norm ('none': off)")
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="autocast precision (auto: bf16 on Ampere or later GPUs, fp16 on older ones, fp32 on a CPU)",
    )
    group.add_argument("--ema-decay", type=optional_float, default=d.ema_decay, help="EMA decay ('none': off)")
    group.add_argument("--seed", type=int, default=d.seed, help="seed of init, data order and dropout")
    group = parser.add_argument_group("bookkeeping")
    group.add_argument("--log-every", type=positive_int, default=d.log_every, help="steps between metric lines")
    group.add_argument(
        "--eval-every",
        type=optional_positive_int,
        default=d.eval_every,
        help="steps between held-out evals, of the raw weights (split 'eval' in metrics.jsonl) and, with an EMA, of "
        "the EMA weights that export writes ('eval_ema')",
    )
    group.add_argument(
        "--eval-samples", type=positive_int, default=d.eval_samples, help="held-out samples per evaluation"
    )
    group.add_argument(
        "--preview-every", type=optional_positive_int, default=d.preview_every, help="steps between previews"
    )
    group.add_argument(
        "--checkpoint-every",
        type=optional_positive_int,
        default=d.checkpoint_every,
        help="steps between checkpoints (one is always written at the end)",
    )
    group.add_argument(
        "--keep-checkpoints", type=int, default=d.keep_checkpoints, help="newest checkpoints kept (0 keeps all)"
    )
    group.add_argument(
        "--max-steps", type=positive_int, default=None, help="stop this invocation at this step (resume later)"
    )
    group = parser.add_argument_group("hardware")
    group.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when available)")
    group.add_argument(
        "--num-workers",
        type=int,
        default=d.num_workers,
        help=f"data-loading worker processes (default: {d.num_workers}; 0 loads in the main process)",
    )
    group.add_argument(
        "--strategy",
        choices=("ddp", "fsdp", "none"),
        default=d.strategy,
        help="data parallelism under torchrun: ddp (a replica per process), fsdp (sharded weights; previews need "
        "--ema-decay), none (one process only: refused with more, whose models would never sync)",
    )
    group.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="seconds a process of a torchrun job waits for the others before stopping with an error (default 600)",
    )
    group.add_argument("--compile", action="store_true", help="torch.compile the model")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(_parser=parser)


# A source of values: (dests that name it, dests that follow from it), e.g. the data and its class count.
Source = tuple[tuple[str, ...], tuple[str, ...]]


def apply_run_file(args: argparse.Namespace, sources: tuple[Source, ...] = ()) -> argparse.Namespace:
    """Fill every option not typed on the command line from the ``--config`` file's "args" (see PRECEDENCE_HELP).

    The whole file is checked first, also the values the command line overrides: a broken file is refused.

    Args:
        args: parsed flags of a parser prepared by ``record_given_options``.
        sources: when a dest that names a source is typed, the file's values for all of that source's dests
            and the dests that follow from it are dropped: they describe another source (the file's data,
            the file's fresh model).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, not a run file, names an unknown flag or gives a value the flag refuses.
    """
    if not getattr(args, "config", None):
        return args
    path = Path(args.config)
    values = read_run_file(path, args._parser)
    given = given_options(args)
    # The file's data flags describe one data source: typed data replaces them all, with what follows from them.
    foreign = {dest for names, follow in sources if given & set(names) for dest in (*names, *follow)}
    dropped = []
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest in given:
            continue
        if dest in foreign:
            dropped.append(key)
            continue
        setattr(args, dest, value)
        setattr(args, FROM_FILE, frozenset(getattr(args, FROM_FILE, frozenset())) | {dest})
    if dropped:
        from nextscale import distributed

        # Once, not once per rank: these lines come before the process group, when is_main reads RANK.
        distributed.get_logger(__name__).info(
            "ignoring %s from %s: the command line names another source for them", ", ".join(dropped), path
        )
    return args


def read_run_file(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The run file's "args" as ``parser``'s flags would parse them: {flag name without dashes: value}.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: anything else wrong with it, in one line naming the file, the key and the fix.
    """
    run_file = _load_json(path)
    if not isinstance(run_file, dict):
        raise ValueError(
            f'{path}: a run file is a JSON object like {{"args": {{"steps": 2}}}}, got a {_kind(run_file)}'
        )
    actions = _file_flags(parser)
    if "args" not in run_file:
        found = ", ".join(json.dumps(key) for key in run_file) or "none"
        raise ValueError(
            f'{path}: a run file holds its flags under "args", like {{"args": {{"steps": 2}}}}, '
            f'but it has no "args" (top-level keys: {found})'
        )
    if on_top := [json.dumps(key) for key in run_file if key.replace("-", "_") in actions]:
        raise ValueError(f'{path}: move {", ".join(on_top)} into "args"; the top level of a run file is not read')
    file_args = run_file["args"]
    if not isinstance(file_args, dict):
        raise ValueError(f'{path}: "args" must be an object of flag names and values, got a {_kind(file_args)}')
    values = {}
    for key, value in file_args.items():
        action = actions.get(key.replace("-", "_"))
        if action is None:
            raise ValueError(_unknown_flag(path, key, run_file, parser.prog, actions))
        try:
            values[key] = _file_value(action, value)
        except _Refused:
            flag = max(action.option_strings, key=len)
            raise ValueError(
                f"{path}: {json.dumps(key)} must be {_takes(action)} (as {flag} takes), got {json.dumps(value)}"
            ) from None
    return values


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"run file {path} not found")
    if not path.is_file():
        raise ValueError(
            f"run file {path} is not a file; --config takes a JSON file such as configs/tiny_tokenizer.json"
        )
    try:
        return json.loads(path.read_bytes())
    except ValueError as err:  # JSONDecodeError, or bytes that are no text (UnicodeDecodeError)
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def _kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", type(None): "null value"}.get(type(value), "number")


def _file_flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flags a run file may set, by dest: all of ``parser``'s but --help, --config and hidden dests."""
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "config") and not action.dest.startswith("_")
    }


def _unknown_flag(path: Path, key: str, run_file: dict, prog: str, actions: dict[str, argparse.Action]) -> str:
    """The error for a key of "args" that is no flag of ``prog``: a near spelling, or the command the file is for."""
    message = f"{path}: unknown flag {key!r} in 'args' (see `{prog} --help` for the flags it takes)"
    names = [dest.replace("_", "-") for dest in actions]
    if close := difflib.get_close_matches(key.replace("_", "-"), names, n=1):
        return f"{message}; did you mean {close[0]!r}?"
    # configs/*.json say how they are run: "nextscale train --config configs/x.json ..."
    command = run_file.get("command")
    meant = re.findall(r"nextscale ([a-z][a-z-]*)[^&;|]*--config", command) if isinstance(command, str) else []
    if meant and prog.split()[-1] not in meant:
        return f"{message}; the file's 'command' runs it with `nextscale {meant[0]}`"
    return message


class _Refused(Exception):
    """A run-file value that its flag does not take (``read_run_file`` says what the flag takes)."""


def _file_value(action: argparse.Action, value: Any) -> Any:
    """A run-file value as the flag would parse it: a JSON string or number is the text typed after the flag
    (so "none" and "1,2,4" work, and 4.5 is no integer), true/false sets a switch, a list gives a flag's values.

    Worked example for --batch-size (type int): 64 -> 64, "64" -> 64, 4.5 / 4.0 / "four" / true -> _Refused.
    """
    if action.nargs == 0:  # a switch: --compile
        if not isinstance(value, bool):
            raise _Refused
        return value
    if value is None and _takes_none(action):
        return None
    if action.nargs in (None, "?"):
        if isinstance(value, list) and action.type in COMMA_TYPES:
            value = ",".join(_text(item) for item in value)  # [1, 2, 4] is "1,2,4"
        return _parse(action, value)
    items = value if isinstance(value, list) else [value]  # a lone value is one value typed after the flag
    if not _count_fits(action.nargs, len(items)):
        raise _Refused
    return [_parse(action, item) for item in items]


def _text(value: Any) -> str:
    """The command-line text a JSON scalar stands for (repr keeps floats exact: 0.0001, 1e-05)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Refused
    return value if isinstance(value, str) else repr(value)


def _parse(action: argparse.Action, value: Any) -> Any:
    text = _text(value)
    try:
        parsed = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        raise _Refused from None
    if action.choices is not None and parsed not in action.choices:
        raise _Refused
    return parsed


def _takes_none(action: argparse.Action) -> bool:
    """Whether null fits a flag: its default is None, or its type reads "none" as None (--lr none)."""
    if action.default is None:
        return True
    try:
        return callable(action.type) and action.type("none") is None
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return False


def _count_fits(nargs: int | str, count: int) -> bool:
    if isinstance(nargs, int):
        return count == nargs
    return count >= 1 if nargs == "+" else True


def _takes(action: argparse.Action) -> str:
    """What a flag takes, in words: 'an integer', 'one of "lin0", "cos"', 'a list of 2 values, each a number'."""
    if action.nargs == 0:
        return "true or false"
    if action.choices is not None:
        one = "one of " + ", ".join(json.dumps(choice) for choice in action.choices)
    else:
        one = TYPE_WORDS.get(action.type, "a string" if action.type is None else "a value")
    if action.nargs in (None, "?"):
        return one
    count = {"+": "one or more", "*": "any number of"}.get(action.nargs, action.nargs)
    return f"a list of {count} values, each {one}"


def train_config_from_args(args: argparse.Namespace, samples_per_epoch: int, **overrides: Any) -> TrainConfig:
    """TrainConfig from the parsed flags; the length comes from --steps, or --epochs over ``samples_per_epoch``."""
    if args.steps is not None:
        total_steps = args.steps
    elif args.epochs is not None:
        if not args.epochs > 0:  # else a run of one step, silently
            raise ValueError(f"--epochs must be > 0 (passes over the data, e.g. 0.5 or 200), got {args.epochs:g}")
        total_steps = max(1, round(args.epochs * samples_per_epoch / args.batch_size))
    else:
        raise ValueError("give the length of the run: --steps N or --epochs E")
    values = dict(
        total_steps=total_steps,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        base_lr=args.base_lr,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        warmup=args.warmup,
        end_lr_factor=args.end_lr_factor,
        weight_decay=args.weight_decay,
        weight_decay_end=args.weight_decay_end,
        betas=tuple(args.betas),
        grad_clip=args.grad_clip,
        precision=args.precision,
        ema_decay=args.ema_decay,
        seed=args.seed,
        log_every=args.log_every,
        eval_every=args.eval_every,
        eval_samples=args.eval_samples,
        preview_every=args.preview_every,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        num_workers=args.num_workers,
        strategy=args.strategy,
        compile=args.compile,
        progress=not args.no_progress,
    )
    values.update(overrides)
    return TrainConfig(**values)


def train_in_run_dir(args: argparse.Namespace, train: Callable[[argparse.Namespace, DistInfo], None]) -> None:
    """Run ``train(args, dist_info)`` as every training command does: the parallelism checked before any data is
    read, inside the torchrun process group (``--device``, ``--dist-timeout``), holding ``--run-dir``'s lock.

    A start that fails before its first checkpoint removes the run directory it created (see ``hold_run_dir``).

    Raises:
        KeyboardInterrupt: on the main process, a Ctrl-C that saved nothing (while loading, or a second one), with
            the line that says what there is to resume; ``TrainingInterrupted`` (it saved) passes as it is.
        SystemExit: with status 130 on the other processes of that run, which print nothing.
    """
    from nextscale import distributed
    from nextscale.training.interrupt import TrainingInterrupted, unsaved_interrupt_message
    from nextscale.training.parallel_guards import check_parallelism
    from nextscale.training.run_lock import hold_run_dir

    check_parallelism(args, distributed.launched_processes())  # before any data is read
    with distributed.process_group(device=args.device, timeout_s=args.dist_timeout) as dist_info:
        try:
            with hold_run_dir(args.run_dir, dist_info):
                train(args, dist_info)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            if not dist_info.is_main:  # a Ctrl-C reaches every rank: one line, from the main process
                raise SystemExit(INTERRUPTED_STATUS) from None
            raise KeyboardInterrupt(unsaved_interrupt_message(Path(args.run_dir))) from None


# The exit status of an interrupted command (128 + SIGINT, as the CLI returns for a KeyboardInterrupt).
INTERRUPTED_STATUS = 130


def fit_and_report(trainer, max_steps: int | None, datasets, kind: str) -> dict:
    """Run ``trainer.fit``, report skipped image files (also when training stops early; not when it trained
    nothing) and print the run's summary line on the main process: ``{kind} run DIR at step S/T: loss=…``.

    Raises:
        TrainingInterrupted: on the main process, when a signal stopped training (after its checkpoint).
        SystemExit: with status 130 on the other processes of that run, which print nothing.
        CheckpointWriteError: on the main process, when it could not write a checkpoint.
        RankZeroWriteFailed: on the other processes of that run: a short line pointing to the main process's.
    """
    from nextscale.training.data_specs import report_skipped_images
    from nextscale.training.failures import CheckpointWriteError, RankZeroWriteFailed
    from nextscale.training.interrupt import TrainingInterrupted

    trained = True  # an error or interrupt reports what the steps it began found
    try:
        metrics = trainer.fit(max_steps)
        trained = bool(metrics)  # fit logs the last step it trains: none, nothing trained (as the line below says)
    except TrainingInterrupted:
        if trainer.dist.is_main:
            raise  # the CLI prints where it saved and how to resume
        # Every rank stops at the signal: the others exit with the CLI's status for an interrupt (130) without
        # printing the same line once per process.
        raise SystemExit(INTERRUPTED_STATUS) from None
    except CheckpointWriteError as err:
        if trainer.dist.is_main:
            raise  # names the cause (full disk, permissions) and the checkpoint to resume from
        raise RankZeroWriteFailed(err.path, trainer.dist.rank) from err
    finally:
        # A re-run that trains nothing (finished, or --max-steps not past the step) read no images: the files its
        # data check skipped were named when it loaded the data, and a summary after "nothing to train" is noise.
        if trained:
            report_skipped_images(datasets)
    if trainer.dist.is_main:
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/scale" not in k)
        where = f"{kind} run {trainer.run_dir} at step {trainer.step}/{trainer.config.total_steps}"
        # A re-run that trains nothing (the run finished, or --max-steps is not past its step) says so.
        if shown:
            print(f"{where}: {shown}")
        elif trainer.step < trainer.config.total_steps:
            print(f"{where}: nothing to train, --max-steps {max_steps} is not past the run's step (raise it to go on)")
        else:
            print(f"{where}: already finished, nothing to train (see its metrics.jsonl)")
    return metrics
