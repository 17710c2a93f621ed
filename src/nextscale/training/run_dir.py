"""A run directory's config.json: checked before a run (it resumes only under the config its checkpoints were
made with) and written when training starts.

A refusal says what to do instead: the original settings, a new run directory, or (for another number of
steps, which changes the learning-rate schedule) a new run that starts from this one's weights. A run directory
that a failed start created and left without a checkpoint is removed again (``remove_unstarted_run``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nextscale import distributed
from nextscale.pretrained import atomic_write_text
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import RESUMABLE_CHANGES, config_differences


def check_run_dir(run_dir: Path, run_config: dict[str, Any], total_steps: int) -> None:
    """Refuse a run directory whose checkpoints were made by another config; log the settings a resume changes.

    A config.json without any checkpoint is what a start that failed before training leaves behind: it
    binds nothing, so the corrected command may start afresh (``Trainer.fit`` rewrites it).

    Args:
        run_dir: the run directory.
        run_config: this run's normalised config (what ``Trainer`` writes as config.json).
        total_steps: this run's ``TrainConfig.total_steps``.
    Raises:
        ValueError: config.json is not JSON, or differs from ``run_config`` while checkpoints exist.
    """
    path = run_dir / "config.json"
    checkpoints = ckpt.list_checkpoints(run_dir)
    if not path.is_file() or not checkpoints:
        return
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix it or choose a new run directory") from err
    warn_if_held_out_changed(run_dir, saved.get("held_out"), run_config.get("held_out"))
    refuse_another_config(run_dir, saved, run_config, total_steps)
    if changes := resumable_changes(saved, run_config):
        # config.json is rewritten with the new values: this line is the only trace of the old ones
        distributed.get_logger("nextscale.training").info(
            "resuming %s with changed settings: %s (config.json records the new values from here on)",
            run_dir,
            "; ".join(changes),
        )


def resumable_changes(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings that may change at a resume (``RESUMABLE_CHANGES``) and did, as "name: old -> new"; fields the
    saved config lacks (runs made before they were recorded) and the held-out data (warned about) are left out."""
    out = []
    for key in sorted(set(saved) & set(current)):
        old, new = saved[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out.extend(resumable_changes(old, new, f"{prefix}{key}."))
        elif key in RESUMABLE_CHANGES and key != "held_out" and old != new:
            shown = [text if len(text) <= 60 else text[:57] + "..." for text in (repr(old), repr(new))]
            out.append(f"{prefix}{key}: {shown[0]} -> {shown[1]}")
    return out


# The step total is compared apart: another total alone has advice of its own (see ``refuse_another_config``).
TOTAL_STEPS = "train.total_steps"
# How much a difference changes the run, most first, by the setting's name (or its first part): what the run is,
# then the model (and the tokenizer a transformer reads), then the data; every other setting after these.
_FIRST_DIFFERENCES = (
    ("kind", "model_class"),
    ("tokenizer", "transformer", "tokenizer_weights_hash", "tokenizer_source", "text_encoder"),
    ("data", "tokens", "class_names", "crop_margin", "caption_held_out", "init_from"),
)
_MODEL_RANK = 1  # differences ranked up to here change the model: another run's weights do not fit it
_SHOWN_DIFFERENCES = 6
_SHOWN_CHARS = 120  # a whole section absent on one side ("losses: {...}") would fill the screen


def difference_rank(difference: str) -> int:
    """Where a ``config_differences`` line ("train.lr: 0.002 in the run, 0.001 now") goes in a refusal: by
    ``_FIRST_DIFFERENCES``, the step total last."""
    name = difference.split(":", 1)[0]
    if name == TOTAL_STEPS:
        return len(_FIRST_DIFFERENCES) + 1
    first = name.split(".", 1)[0]
    return next((rank for rank, names in enumerate(_FIRST_DIFFERENCES) if first in names), len(_FIRST_DIFFERENCES))


def refuse_another_config(run_dir: Path, saved: dict[str, Any], run_config: dict[str, Any], total_steps: int) -> None:
    """Raise when ``run_config`` differs from ``saved`` (config.json, or the config a checkpoint recorded) in a way
    that makes it another run; the message lists the differences that matter most first (``difference_rank``) and
    says how to resume or where to start instead."""
    differences = sorted(config_differences(saved, run_config), key=difference_rank)
    if not differences:
        return
    shown = [text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..." for text in differences]
    more = len(shown) - _SHOWN_DIFFERENCES
    listed = "; ".join(shown[:_SHOWN_DIFFERENCES]) + (f"; and {more} more" if more > 0 else "")
    message = f"run directory {run_dir} was made by a different config ({listed})"
    saved_total = saved.get("train", {}).get("total_steps")
    if saved_total is None or saved_total == total_steps:
        raise ValueError(message + "; use a new run directory, or the original settings to resume")
    raise ValueError(f"{message}: {another_total_advice(run_dir, differences, saved_total, total_steps)}")


def another_total_advice(run_dir: Path, differences: list[str], saved_total: int, total: int) -> str:
    """What to do instead of resuming with another step total (``differences`` sorted by ``difference_rank``).

    The LR schedule (warm-up length, decay) is a function of the total, so another total is another run."""
    finished = ckpt.checkpoint_step(ckpt.list_checkpoints(run_dir)[-1]) >= saved_total
    if difference_rank(differences[0]) < difference_rank(TOTAL_STEPS):
        # The total is not all that changed (another --data also changes an --epochs run's total): advice about
        # the schedule alone would not fit the other settings.
        if not finished:
            return (
                f"to resume it, give its own settings, --steps {saved_total} (or the original --epochs) among them; "
                "else train in a new --run-dir"
            )
        weights_fit = difference_rank(differences[0]) > _MODEL_RANK
        start_from = f" (add --init-from {run_dir} to start from its weights)" if weights_fit else ""
        return f"the run finished its {saved_total}-step schedule; train in a new --run-dir{start_from}"
    if finished:
        return (
            f"the run finished its {saved_total}-step schedule, and its learning-rate schedule was built for that "
            f"total, so it cannot run on to {total} steps here. To train further, start a new run from its weights "
            f"(fresh optimizer and schedule): add --init-from {run_dir} and give a new --run-dir"
        )
    return (
        f"the learning-rate schedule is built for the run's total, so resume it with --steps {saved_total} (or the "
        f"original --epochs), or train {total} steps in a new --run-dir"
    )


def warn_if_held_out_changed(run_dir: Path, saved: Any, current: Any) -> None:
    """A resume may evaluate on other held-out data (a val/ folder added later), but its curve then joins two
    measurements: say so, with the step where they meet (runs made before the held-out data was recorded: silent)."""
    if saved is None or current is None or saved == current:
        return
    checkpoints = ckpt.list_checkpoints(run_dir)
    step = ckpt.checkpoint_step(checkpoints[-1]) if checkpoints else 0
    distributed.get_logger("nextscale.training").warning(
        "the held-out data changed since the run's last start (%s, now %s): held-out metrics after step %d measure "
        "other data than those before it",
        saved,
        current,
        step,
    )


def write_run_config(run_dir: Path, run_config: dict[str, Any], is_main: bool) -> None:
    """Record what made the run, once training starts (a failed start leaves nothing that binds)."""
    distributed.barrier()
    if is_main:
        atomic_write_text(run_dir / "config.json", json.dumps(run_config, indent=2) + "\n")


def remove_unstarted_run(run_dir: Path, created: Path) -> bool:
    """Remove ``run_dir`` and its empty parents up to ``created``, the outermost folder the failed command made,
    unless its checkpoints/ holds anything (a checkpoint, or the remains of one): a start that failed before its
    first checkpoint leaves only its lock file, config.json and logs, which resume nothing. Call it holding the
    run's lock, so that no other command can have started in the folder. Returns whether it was removed.

    Example: ``--run-dir runs/a/b`` where runs/ existed: ``created`` is runs/a, and runs/a goes too when empty.
    """
    if created != run_dir and created not in run_dir.parents:
        return False
    checkpoints = run_dir / ckpt.CHECKPOINT_DIR
    log = distributed.get_logger("nextscale.training")
    try:
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            return False
        shutil.rmtree(run_dir)
        for parent in run_dir.parents:
            if parent == created.parent:
                break
            parent.rmdir()  # OSError when not empty: something else is there, it stays
    except OSError as err:  # never hides the error that stopped the run
        log.debug("could not remove the unstarted run directory %s: %s", run_dir, err)
        return not run_dir.exists()
    log.debug("removed run directory %s: this command created it and saved no checkpoint", run_dir)
    return True
