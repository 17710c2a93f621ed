"""Checks of the run paths a training command is given, made before any model or data is loaded: a checkpoint file
named where a run or model folder goes, and a --run-dir that is a run of the other stage. Both mistakes otherwise
end in a message about state dicts or a changed config, which says nothing of the path."""

from __future__ import annotations

from pathlib import Path


def check_not_run_checkpoint(flag: str, value: str | None) -> None:
    """Refuse ``value`` when it is a checkpoint of a `nextscale train`/`train-tokenizer` run
    (RUN/checkpoints/step-N.pt beside RUN/config.json), naming the run folder to pass instead.

    Without this check the file is read as an official VAR checkpoint and refused for its extra keys."""
    from nextscale.training.checkpoint import CHECKPOINT_DIR, checkpoint_step

    if not value:
        return
    path = Path(value)
    run = path.parent.parent
    if not path.is_file() or path.parent.name != CHECKPOINT_DIR or not (run / "config.json").is_file():
        return
    try:
        step = checkpoint_step(path)
    except ValueError:  # another file in checkpoints/: not a checkpoint this check knows
        return
    raise ValueError(
        f"{flag} {value} is a checkpoint of the training run {run}: pass the run folder ({flag} {run}, its newest "
        f"checkpoint), or export this step first (`nextscale export --run {run} --step {step} --out DIR`) and pass "
        f"{flag} DIR"
    )


def check_run_dir_kind(run_dir: str | None, kind: str) -> None:
    """Refuse a --run-dir that is a training run of the other kind ("tokenizer" or "transformer"): resuming it
    would fail on a config that differs in everything."""
    from nextscale.training.export import run_kind

    if not run_dir:
        return
    found = run_kind(run_dir)
    if found is None or found == kind:
        return
    if found == "tokenizer":
        raise ValueError(
            f"--run-dir {run_dir} is a tokenizer training run; `nextscale train` writes a new transformer run: "
            f"give it a new --run-dir (e.g. runs/NAME-var) and the tokenizer as --tokenizer {run_dir}"
        )
    raise ValueError(
        f"--run-dir {run_dir} is a transformer training run; `nextscale train-tokenizer` writes a tokenizer run: "
        "give it a new --run-dir (e.g. runs/NAME-tokenizer)"
    )
