"""What a sweep's sweep.json records, and how a re-run of `nextscale scaling run` is compared with it.

The runs of a sweep must share every setting but their depth and seed: a re-run whose settings differ from the
record (width base, batch, budget, --eval-every, data, the flags after `--`, which give the base seed) is refused,
naming each difference as the flags that give it. Depths and seeds are the sweep's two axes, not settings: a
re-run may add either, and sweep.json lists every depth and seed that has a run.
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


def sweep_settings(args: argparse.Namespace, extra: list[str]) -> dict[str, object]:
    """The sweep.json settings every run of the sweep shares (depths and seeds apart)."""
    if args.steps is not None:
        budget = {"steps": args.steps}
    elif args.token_budget is not None:
        budget = {"tokens": args.token_budget}
    else:
        budget = {"flops": args.compute_budget}
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


def setting_differences(recorded: dict, settings: dict) -> list[str]:
    """'FLAG NOW (recorded: THEN)' for every setting that differs from the sweep's record; keys an older
    sweep.json lacks are not compared."""
    return [
        f"{_setting_text(key, settings[key])} (recorded: {_setting_text(key, recorded[key])})"
        for key in SWEEP_SETTINGS
        if key in recorded and not _same_setting(key, recorded[key], settings[key])
    ]


def _same_setting(key: str, recorded: object, now: object) -> bool:
    if recorded == now:
        return True
    if key in ("tokens", "eval_tokens", "tokenizer"):  # one folder named two ways (relative, absolute)
        return Path(str(recorded)).resolve() == Path(str(now)).resolve()
    return False


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
