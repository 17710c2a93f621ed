"""A --run-dir that is a training run of the other stage, refused before any model or data is loaded: resuming it
would otherwise end in a message about a changed config, which says nothing of the path. (A checkpoint file given
where a run folder goes is refused by ``training.export.check_not_run_checkpoint``, for every loader's caller.)"""

from __future__ import annotations


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
