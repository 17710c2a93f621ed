"""What a sweep's sweep.json records, and how a re-run of `nextscale scaling run` is compared with it.

The runs of a sweep must share every setting but their depth and seed: a re-run whose settings differ from the
record (width base, batch, budget, --eval-every, data, the flags after `--`, which give the base seed) is refused,
naming each difference as the flags that give it. The flags after `--` are compared by what `nextscale train`
parses them to: `--lr 3e-3`, `--lr=3e-3` and `--lr 0.003`, in any order, are one setting; --eval-every typed at
the value it defaults to (steps / 10, rounded up) is the setting of leaving it out. Depths and seeds are the
sweep's two axes, not settings: a re-run may add either, and sweep.json lists every depth and seed that has a run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# sweep.json keys that must match for a re-run to resume or extend the sweep, and the flag of each plain value.
SWEEP_SETTINGS = {
    "tokens": "--tokens",
    "eval_tokens": "--eval-tokens",
    "tokenizer": "--tokenizer",
    "width_base": "--width-base",
    "batch_size": "--batch-size",
    "budget": None,  # --steps, --token-budget or --compute-budget
    "eval_every": "--eval-every",
    "train_args": None,  # the flags after --
}
BUDGET_FLAGS = {"steps": "--steps", "tokens": "--token-budget", "flops": "--compute-budget"}
# How a --compute-budget turns into steps, recorded beside it: 6 x (per-token parameters x tokens + per-image
# parameters x images). A sweep.json without it planned with 6 x all parameters x tokens (``uses_old_compute_count``).
COMPUTE_COUNT = "6 x (params_per_token x tokens + params_per_image x images)"


def uses_old_compute_count(recorded: dict) -> bool:
    """Whether a recorded --compute-budget sweep planned its steps before ``COMPUTE_COUNT``."""
    budget = recorded.get("budget")
    return isinstance(budget, dict) and "flops" in budget and "count" not in budget


def sweep_settings(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    """The sweep.json settings every run of the sweep shares (depths and seeds apart)."""
    if args.steps is not None:
        budget = {"steps": args.steps}
    elif args.token_budget is not None:
        budget = {"tokens": args.token_budget}
    elif getattr(args, "old_compute_count", False):
        budget = {"flops": args.compute_budget}  # as recorded: the sweep keeps its own count
    else:
        budget = {"flops": args.compute_budget, "count": COMPUTE_COUNT}
    return {
        "tokens": str(args.tokens),
        "eval_tokens": str(args.eval_tokens),
        "tokenizer": str(args.tokenizer),
        "width_base": args.width_base,
        "batch_size": args.batch_size,
        "budget": budget,
        "eval_every": args.eval_every,
        "train_args": extra,
    }


def setting_differences(recorded: dict, settings: dict, derived_eval_every: frozenset[int] = frozenset()) -> list[str]:
    """'FLAG NOW (recorded: THEN)' for every setting that differs from the sweep's record; keys an older
    sweep.json lacks are not compared. Flags after `--` also name the flags that differ, which a long list hides.
    ``derived_eval_every``: the --eval-every each run of the sweep gets when none is typed (under the budget
    typed now; a different budget is itself a difference)."""
    differences = []
    for key in SWEEP_SETTINGS:
        if key not in recorded or _same_setting(key, recorded[key], settings[key], derived_eval_every):
            continue
        text = f"{_setting_text(key, settings[key])} (recorded: {_setting_text(key, recorded[key])})"
        if key == "train_args" and (names := _differing_train_flags(recorded[key], settings[key])):
            text += f" [they differ in {', '.join(names)}]"
        differences.append(text)
    return differences


def _same_setting(key: str, recorded: object, now: object, derived_eval_every: frozenset[int]) -> bool:
    if recorded == now:
        return True
    if key == "eval_every":
        # Compared by the value every run gets. Unlike a flag after `--` typed at its default (which overrides a
        # --config file where leaving it out does not, so differs), --eval-every left out is derived from the
        # run's steps and the sweep always types it for `nextscale train`, which no --config file may set: typed
        # at the derived value or left out, every run trains with the same argv.
        return _effective_eval_every(recorded, derived_eval_every) == _effective_eval_every(now, derived_eval_every)
    if key in ("tokens", "eval_tokens", "tokenizer"):  # one folder named two ways (relative, absolute)
        return Path(str(recorded)).resolve() == Path(str(now)).resolve()
    if key == "train_args" and isinstance(recorded, list):
        return _same_train_flags(recorded, now)
    return False


def _effective_eval_every(value: object, derived_eval_every: frozenset[int]) -> frozenset:
    """The --eval-every values the runs get: the typed one, or (None) the derived one of each run."""
    return derived_eval_every if value is None else frozenset([value])


def _same_train_flags(recorded: list, now: list) -> bool:
    """Whether two spellings of the flags after `--` give `nextscale train` the same settings: `--lr 3e-3`,
    `--lr=3e-3` and `--lr 0.003` do. Both are parsed by train's own parser and compared value by value, with the
    set of flags typed: a flag typed at its default is still a difference, as it overrides a --config file's
    value where leaving it out does not. Flags that do not parse (a record of an older version) differ."""
    parsed = _parsed_train_flags(recorded, now)
    return parsed is not None and parsed[0] == parsed[1]


def _differing_train_flags(recorded: object, now: list) -> list[str]:
    """The `nextscale train` flags whose values (or whose being typed) differ, e.g. ['--lr']; [] if unknown."""
    parsed = _parsed_train_flags(recorded, now) if isinstance(recorded, list) else None
    if parsed is None:
        return []
    from nextscale.training.options import GIVEN

    then, later = parsed
    names = sorted(dest for dest in then.keys() | later.keys() if dest != GIVEN and then.get(dest) != later.get(dest))
    if not names:  # equal values, typed on one side only (e.g. --seed 0, the default)
        names = sorted(then.get(GIVEN, frozenset()) ^ later.get(GIVEN, frozenset()))
    return [f"--{name.replace('_', '-')}" for name in names]


def _parsed_train_flags(recorded: list, now: list) -> tuple[dict, dict] | None:
    """Both flag lists as `nextscale train` parses them ({dest: value}, with the set of typed dests), or None when
    one does not parse."""
    from nextscale.cli.scaling import _train_parser

    parser = _train_parser()
    try:
        parsed = [vars(parser.parse_args([str(flag) for flag in flags])) for flags in (recorded, now)]
    except ValueError:
        return None
    for values in parsed:
        values.pop("_parser", None)  # the parser object itself, set as a default by record_given_options
    return parsed[0], parsed[1]


def _setting_text(key: str, value) -> str:
    """A setting as the flags that give it: '--width-base 16', '--steps 60', '-- --lr 2e-3'."""
    if key == "budget":
        kind, amount = next(iter(value.items()))
        return f"{BUDGET_FLAGS.get(kind, kind)} {amount:g}"
    if key == "train_args":
        return f"-- {' '.join(value)}" if value else "no flags after --"
    if value is None:
        return f"no {SWEEP_SETTINGS[key]}"
    return f"{SWEEP_SETTINGS[key]} {value}"


def recorded_settings(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or use a new --out") from err
    if not isinstance(recorded, dict):
        raise ValueError(f"{path} is not a sweep's settings (a JSON object); restore it or use a new --out")
    return recorded
