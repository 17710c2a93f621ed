"""A trainer's checkpoint: the state it holds, the write every rank agrees on, and the exact resume from it.

``checkpoint_state`` and ``resume_latest`` are each other's inverse, so a new piece of state is added in this one file:
model, EMA, optimizers, GradScaler, step, run configs, data position, every rank's RNG state and metrics window,
the held-out watch and the subclass's ``extra_state``. The file format itself (atomic writes, checksums, pruning,
the newest readable file) is ``checkpoint``'s.

Every rank resumes from the same file (rank 0 picks it), and a data position saved under another --grad-accum
carries over when the steps still train on the same samples (``resumed_position``).

References: torchtitan ``components/checkpoint.py``, VAR ``utils/misc.py`` (``auto_resume``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nextscale import distributed
from nextscale.data.samplers import ResumableDistributedSampler
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TrainConfig
from nextscale.training.ema import EMA
from nextscale.training.failures import CheckpointWriteError
from nextscale.training.metrics import MetricsLog, merge_rank_windows
from nextscale.training.run_dir import refuse_another_config

if TYPE_CHECKING:
    from nextscale.training.loop import Trainer

log = distributed.get_logger(__name__)


# ------------------------------------------------------------------------------------------------ saving
def checkpoint_state(trainer: Trainer) -> dict[str, Any]:
    """Everything resuming ``trainer`` needs, as plain data (call on every rank: FSDP and RNG gathering are
    collective).

    Only rank 0's state is written, and only rank 0's holds the weights: the other ranks take part in the
    collectives but copy no weights to the CPU (their "models" entries are empty, their "ema" is None)."""
    keep = trainer.dist.is_main
    return {
        "format": 1,
        "step": trainer.step,
        "configs": trainer.run_config,
        "models": {name: distributed.full_state_dict(m, keep=keep) for name, m in trainer.wrapped.items()},
        "ema": trainer.ema.state_dict() if trainer.ema is not None and keep else None,
        "optimizers": {
            name: distributed.optimizer_state_dict(trainer.wrapped[name], opt)
            for name, opt in trainer.optimizers.items()
        },
        "scaler": trainer.scaler.state_dict(),
        "sampler": trainer.sampler.state_for_step(trainer.step * trainer.config.grad_accum),
        "rng": distributed.all_gather_objects(ckpt.capture_rng_state()),
        "metrics_window": distributed.all_gather_objects(
            {name: torch.stack(values).cpu() for name, values in trainer.metrics_window.items()}
        ),
        "world_size": trainer.dist.world_size,
        "held_out_watch": trainer.held_out_watch.state_dict(),
        "extra": trainer.extra_state(),
    }


def write_checkpoint(
    state: dict[str, Any],
    run_dir: Path,
    step: int,
    keep_checkpoints: int,
    dist: distributed.DistInfo,
    metrics_log: MetricsLog,
    saved_step: int | None,
) -> Path:
    """Write step ``step``'s checkpoint (rank 0) and prune old ones; every rank returns its path.

    Args:
        state: ``checkpoint_state``'s result.
        saved_step: the step of the run's newest checkpoint so far, named by the error as the one to resume from.

    Raises:
        CheckpointWriteError: on every rank, when rank 0 could not write it (disk full, permissions); the
            previous checkpoint stays intact and no temporary file is left.
    """
    path = ckpt.checkpoint_path(run_dir, step)
    error: OSError | None = None
    if dist.is_main:
        try:
            metrics_log.flush()  # the checkpoint's metrics lines are on disk before it is
            ckpt.save_checkpoint(path, state)
            ckpt.prune_checkpoints(run_dir, keep_checkpoints, saved_step=step)
        except OSError as err:
            error = err
    if dist.is_distributed:  # also the barrier: no rank runs ahead of a checkpoint being written
        failed = distributed.all_reduce_sum(torch.tensor(float(error is not None), device=dist.device))
        if failed.item() and error is None:
            error = OSError(None, "rank 0 could not write it")
    if error is not None:
        raise CheckpointWriteError(path, error, run_dir, saved_step) from error
    return path


# ---------------------------------------------------------------------------------------------- resuming
def resume_latest(trainer: Trainer) -> None:
    """Restore ``trainer`` from its run directory's newest readable checkpoint, the same file on every rank; without
    one, drop the metrics lines of a start that crashed before its first checkpoint.

    Raises:
        ValueError: the checkpoint belongs to another trainer or run config, a rank sees another file than rank 0,
            or its data position cannot carry over to this --grad-accum.
    """
    found = load_agreed_checkpoint(trainer.run_dir, trainer.dist)
    if found is None:
        trainer.metrics_log.truncate_after(0)
        return
    state, path = found
    if not (trainer.run_dir / "config.json").is_file() and state.get("configs"):
        # checkpoints without their config.json (copied to fork a run): they still say what made them
        refuse_another_config(trainer.run_dir, state["configs"], trainer.run_config, trainer.config.total_steps)
    for name, module in trainer.wrapped.items():
        if name not in state["models"]:
            raise ValueError(f"checkpoint {path} has no weights for {name!r}; it belongs to another trainer")
        distributed.load_full_state_dict(module, state["models"][name])
    for name, optimizer in trainer.optimizers.items():
        distributed.load_optimizer_state_dict(trainer.wrapped[name], optimizer, state["optimizers"][name])
    if trainer.ema is not None:
        if state["ema"] is None:
            trainer.ema = EMA(trainer.raw_model, trainer.config.ema_decay)
        else:
            trainer.ema.load_state_dict(state["ema"])
    if state["scaler"]:  # empty when the run so far had no fp16 (precision may change at a resume): start afresh
        trainer.scaler.load_state_dict(state["scaler"])
    regroups, trainer_name = trainer.regroups_micro_batches, type(trainer).__name__
    position = resumed_position(
        state, path, trainer.sampler, trainer.config, trainer.dist.world_size, regroups, trainer_name
    )
    trainer.sampler.load_state_dict(position)
    trainer.step = trainer.saved_step = int(state["step"])
    trainer.load_extra_state(state.get("extra", {}))
    trainer.held_out_watch.load_state_dict(state.get("held_out_watch", {}))  # older checkpoints: none
    window = restore_rng_and_metrics_window(state, path, trainer.dist)
    trainer.metrics_window = {name: list(values.to(trainer.device).unbind(0)) for name, values in window.items()}
    trainer.metrics_log.truncate_after(trainer.step)
    log.info("resumed from %s at step %d", path, trainer.step)


def restore_rng_and_metrics_window(
    state: dict[str, Any], path: Path, dist: distributed.DistInfo
) -> dict[str, torch.Tensor]:
    """Restore this rank's RNG streams and return its saved metrics window ({name: (steps, ...) CPU tensor}).

    On the process count that saved the checkpoint each rank continues its own streams and window. On another,
    the streams restart from the seed, and every rank starts from the saved ranks' per-step means, so that the
    next metrics line still averages the same steps as in an uninterrupted run."""
    windows = state.get("metrics_window") or [{}] * int(state["world_size"])  # older checkpoints: none
    if int(state["world_size"]) == dist.world_size:
        ckpt.restore_rng_state(state["rng"][dist.rank])
        return windows[dist.rank]
    log.warning(
        "checkpoint %s was written by %d processes, now %d: RNG streams restart from the seed",
        path,
        state["world_size"],
        dist.world_size,
    )
    window, left_out = merge_rank_windows(windows)
    if left_out:
        log.warning(
            "the first metrics line after this resume averages %s over the steps from %d on only (the saved "
            "processes kept them for different steps)",
            ", ".join(left_out),
            int(state["step"]) + 1,
        )
    return window


def resumed_position(
    state: dict[str, Any],
    path: Path,
    sampler: ResumableDistributedSampler,
    config: TrainConfig,
    world_size: int,
    regroups_micro_batches: bool,
    trainer_name: str,
) -> dict[str, Any]:
    """The checkpoint's data position, for this run's sampler.

    The sampler cuts the data into micro-steps of ``batch_size / grad_accum`` samples over all processes, and
    an optimizer step takes ``grad_accum`` of them. Another --grad-accum at the same batch size (to go on with
    fewer or more processes) cuts each step's samples differently, but step s still trains on samples
    ``s * batch_size`` to ``(s + 1) * batch_size`` of the data stream, as long as every epoch holds the same
    samples (it drops the ``len % micro-step`` samples of its end): then the position carries over. The
    gradient is the same mean over the same samples (up to float summation order).

    Args:
        state: the loaded checkpoint.
        path: its file, for messages.
        sampler: this run's sampler (its micro-step size and data set length).
        config: this run's settings (``batch_size``, ``grad_accum``).
        world_size: this run's process count.
        regroups_micro_batches: the trainer's ``Trainer.regroups_micro_batches``.
        trainer_name: the trainer's class name, for the error.

    Raises:
        ValueError: the cut cannot change (the stream would differ, or the trainer's steps depend on the
            cut), naming the --grad-accum (or the process count) that resumes this run.
    """
    saved = state["sampler"]
    group, saved_group = sampler.global_batch_size, int(saved.get("global_batch_size", 0))
    size = sampler.dataset_len
    if saved_group == group or saved_group < 1 or saved.get("dataset_len") != size:
        return saved  # the same cut, or another data set: the sampler's own check says what differs
    batch = config.batch_size
    saved_accum, saved_world = batch // saved_group, int(state["world_size"])

    def epoch_samples(micro_step: int) -> int:  # an epoch's samples: the end that fills no micro-step is dropped
        return size // micro_step * micro_step

    def fits(accum: int) -> bool:  # whether --grad-accum accum on world_size processes resumes the same stream
        if batch % (world_size * accum):
            return False
        if batch // accum == saved_group:
            return True
        return regroups_micro_batches and epoch_samples(batch // accum) == epoch_samples(saved_group)

    if not fits(config.grad_accum):
        if not regroups_micro_batches:
            why = f"{trainer_name} updates statistics per micro-step, so their size must stay"
        else:
            why = (
                f"an epoch would train on {epoch_samples(group)} of the {size} samples instead of "
                f"{epoch_samples(saved_group)}, so later steps would see other samples"
            )
        working = [accum for accum in range(1, batch // world_size + 1) if fits(accum)]
        if working:
            fix = f"resume with --grad-accum {' or '.join(map(str, working))} on {world_size} process(es)"
        else:
            fix = (
                f"resume on {saved_world} process(es) (torchrun --nproc_per_node={saved_world} on one node) "
                f"with --grad-accum {saved_accum}"
            )
        raise ValueError(
            f"checkpoint {path} was trained with --grad-accum {saved_accum} on {saved_world} process(es) "
            f"(micro-steps of {saved_group} samples over all processes); --grad-accum {config.grad_accum} "
            f"on {world_size} makes micro-steps of {group}, and {why}: {fix}"
        )
    step = int(state["step"])
    position = sampler.state_for_step(step * config.grad_accum)
    log.info(
        "resuming %s with --grad-accum %d (micro-steps of %d samples over all processes, %d before): every step "
        "trains on the same samples as before",
        path,
        config.grad_accum,
        group,
        saved_group,
    )
    return {**saved, "global_batch_size": group, "epoch": position["epoch"], "step": position["step"]}


def load_agreed_checkpoint(run_dir: Path, dist: distributed.DistInfo) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint to resume from, the same on every rank: rank 0 picks its newest good one, the others load
    that file. Ranks that picked on their own could see different files (a node-local --run-dir, a network file
    system that lags after a crash) and resume at different steps, after DDP already broadcast the weights.

    Rank 0 alone reads the whole file for its SHA-256 (the others wait less long than while it writes a
    checkpoint, which hashes the file too); the others compare the checksum recorded beside their copy with
    rank 0's. Any rank's failure is raised on every rank with the same message.

    Returns:
        (state, path) of the checkpoint, or None when the run directory holds none.
    """
    if not dist.is_distributed:
        return ckpt.load_latest(run_dir)
    found, failure = None, None
    if dist.is_main:
        try:
            found = ckpt.load_latest(run_dir)
        except (ckpt.CheckpointError, OSError) as err:  # told to the others, who would wait for a choice
            failure = err
    # (file name, step, recorded SHA-256) of rank 0's choice, None without one; only rank 0's entry is used
    choice = None if found is None else (found[1].name, int(found[0]["step"]), ckpt.recorded_sha256(found[1]))
    error, choice = distributed.all_gather_objects((None if failure is None else str(failure), choice))[0]
    if failure is not None:
        raise failure
    if error is not None:
        raise ckpt.CheckpointError(error)
    problem = None
    if choice is not None and not dist.is_main:
        name, step, sha256 = choice
        path = run_dir / ckpt.CHECKPOINT_DIR / name
        try:
            if not path.is_file():
                raise ckpt.CheckpointError(f"{path} does not exist here")
            if ckpt.recorded_sha256(path) != sha256:
                raise ckpt.CheckpointError(f"{path} here is another file: its recorded SHA-256 differs")
            state = ckpt.load_checkpoint(path, verify=False)  # the file rank 0 verified
            if int(state["step"]) != step:
                raise ckpt.CheckpointError(f"{path} here holds step {state['step']}, rank 0's step {step}")
            found = state, path
        except (ckpt.CheckpointError, OSError) as err:
            problem = f"rank {dist.rank} cannot resume from {name}, rank 0's newest checkpoint: {err}"
    problems = [problem for problem in distributed.all_gather_objects(problem) if problem is not None]
    if problems:
        raise ValueError(
            f"{problems[0]}: every process must see the same --run-dir {run_dir}; put it on a file "
            "system that all nodes share (a folder local to each node gives each its own checkpoints)"
        )
    return found
