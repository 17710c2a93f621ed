"""`plot --run` and `scaling fit/plot --sweep` on runs still training (run_dir/.lock held by a live process) say so in
one line on stderr: the curves stop where the run has got to, the sweep's point joins when the run finishes. Runs that
are not training get none of it."""

import dataclasses
import json
import os
from pathlib import Path

import pytest

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import config_to_dict
from nextscale.training import run_lock
from nextscale.training.checkpoint import checkpoint_path


@pytest.fixture
def hold():
    """hold(run_dir): lock a run as its training process does (this process is the holder); released after."""
    handles = []
    yield lambda run_dir: handles.append(run_lock.acquire(run_dir))
    for handle in handles:
        handle.close()


def write_run(run_dir: Path, depth: int, total_steps: int, steps: list[int], loss: float) -> Path:
    """A transformer run of ``depth`` blocks: config.json, a checkpoint name and an evaluation at each of ``steps``."""
    _, transformer_config = tiny()
    config = dataclasses.replace(transformer_config, depth=depth)
    run_config = {
        "kind": "transformer",
        "transformer": config_to_dict(config),
        "train": {"total_steps": total_steps, "batch_size": 2, "seed": 0},
    }
    checkpoints = checkpoint_path(run_dir, steps[-1]).parent
    checkpoints.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(run_config))
    records = []
    for step in steps:
        checkpoint_path(run_dir, step).touch()  # only the names are read here
        scales = {f"scale_loss/scale{k}": loss for k in range(config.schedule.num_scales)}
        errors = {f"token_error/scale{k}": 0.5 for k in range(config.schedule.num_scales)}
        records.append({"step": step, "split": "train", "loss": loss + 0.1})
        records.append({"step": step, "split": "eval", "loss": loss, **scales, **errors})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    return run_dir


def test_plot_of_a_run_still_training_says_its_curves_are_partial(tmp_path, hold, capsys):
    run = write_run(tmp_path / "busy", depth=1, total_steps=100, steps=[10, 20], loss=5.0)
    assert main(["plot", "--run", str(run)]) == 0
    assert "still training" not in capsys.readouterr().err  # not training: nothing to say
    hold(run)
    assert main(["plot", "--run", str(run)]) == 0
    captured = capsys.readouterr()
    note = [line for line in captured.err.splitlines() if "still training" in line]
    assert note == [
        f"note: run {run} is still training (process {os.getpid()}): its curves stop at step 20 of 100, "
        "where it has got to; plot again later for the rest"
    ]
    assert captured.out.strip() == f"curves: {run / 'curves.png'}"


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Depths 1 and 2 finished (300 steps), depth 3 at step 100 of 300."""
    for depth, loss in ((1, 5.0), (2, 4.5)):
        write_run(tmp_path / "sweep" / "runs" / f"d{depth}", depth, 300, [100, 300], loss)
    write_run(tmp_path / "sweep" / "runs" / "d3", 3, 300, [100], 4.2)
    return tmp_path / "sweep"


@pytest.mark.parametrize("command", [["fit"], ["plot", "--out", "scaling.png"]])
def test_scaling_fit_and_plot_of_a_sweep_still_training_say_it_is_partial(sweep, hold, command, tmp_path, capsys):
    argv = ["scaling", *command, "--sweep", str(sweep)]
    if command[0] == "plot":
        argv[argv.index("scaling.png")] = str(tmp_path / "scaling.png")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "left out d3: unfinished (100 of 300 steps); re-run `nextscale scaling run`" in err  # stopped, not live
    hold(sweep / "runs" / "d3")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        f"left out d3: still training (process {os.getpid()}, step 100 of 300 saved); this is a partial "
        "sweep: its point joins when the run finishes, so fit or plot again then"
    ) in err
    assert "re-run `nextscale scaling run`" not in err  # that would be refused: the run directory is in use


def test_a_sweep_whose_only_runs_are_training_asks_to_wait(tmp_path, hold, capsys):
    run = write_run(tmp_path / "sweep" / "runs" / "d1", 1, 300, [100], 5.0)
    hold(run)
    assert main(["scaling", "fit", "--sweep", str(tmp_path / "sweep")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("has finished yet; 1 of its runs is training now: fit again when it finishes")
