"""The loop's batches: the micro-batch size, each rank's endless training stream, its share of the held-out set.

The training stream starts at the sampler's position for the step being resumed, so a resumed run reads the
same samples, in the same order, as an uninterrupted one. Every batch is moved to the device.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from nextscale.data.samplers import ResumableDistributedSampler
from nextscale.distributed import DistInfo
from nextscale.training.config import TrainConfig
from nextscale.training.interrupt import SIGNALS


def micro_batch_size(config: TrainConfig, world_size: int, train_size: int, eval_size: int | None) -> int:
    """The samples one rank feeds one micro-step; raises ValueError when the data sets cannot fill the batches.

    Args:
        config: the batch size, accumulation steps and held-out samples.
        world_size: the number of processes.
        train_size: ``len`` of the training set.
        eval_size: ``len`` of the held-out set, None without one.
    """
    ranks_and_steps = world_size * config.grad_accum
    if config.batch_size % ranks_and_steps:
        # The batch splits evenly over processes and micro-steps; the nearest batch sizes that do are the fix (a
        # run resumed on another number of processes meets this with its recorded --batch-size).
        lower = config.batch_size - config.batch_size % ranks_and_steps
        sizes = " or ".join(str(size) for size in (lower, lower + ranks_and_steps) if size > 0)
        raise ValueError(
            f"--batch-size {config.batch_size} does not split evenly over {world_size} process(es) x --grad-accum "
            f"{config.grad_accum} = {ranks_and_steps} micro-batches: use a --batch-size that is a multiple of "
            f"{ranks_and_steps} ({sizes}), another --grad-accum, or another number of processes"
        )
    micro_batch = config.batch_size // ranks_and_steps
    if train_size < micro_batch * world_size:
        # Under VAR's rule the peak lr falls with the batch (1e-4 x 8 / 256 = 3.1e-06, too low to learn): say so.
        follows = "" if config.lr is not None else " (the peak lr falls with it, --base-lr x batch / 256; --lr sets it)"
        raise ValueError(
            f"the training data has {train_size} samples, fewer than one batch of "
            f"{micro_batch * world_size} (batch size {config.batch_size} over {config.grad_accum} "
            f"accumulation step(s)); lower --batch-size to at most {train_size}{follows}, or raise --grad-accum"
        )
    if eval_size is not None and min(eval_size, config.eval_samples) < world_size:
        raise ValueError(
            f"evaluation needs at least one held-out sample per process ({world_size}); "
            f"raise eval_samples or give a larger held-out set"
        )
    return micro_batch


def train_batches(
    dataset: Dataset, sampler: ResumableDistributedSampler, micro_step: int, config: TrainConfig, device: torch.device
) -> Iterator[Any]:
    """Endless per-rank micro-batches from the sampler's position at ``micro_step``, moved to the device."""
    position = sampler.state_for_step(micro_step)
    sampler.load_state_dict(position)
    loader = None
    if config.num_workers > 0:
        # A private generator: creating a DataLoader iterator must not draw from the global RNG,
        # or a resumed run would diverge from an uninterrupted one.
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed),
            pin_memory=device.type == "cuda",
            worker_init_fn=leave_stop_signals_to_the_trainer,
        )
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(sampler.epoch)
        source = (
            loader if loader is not None else (default_collate([dataset[i] for i in indices]) for indices in sampler)
        )
        for batch in source:
            yield to_device(batch, device)


def leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A DataLoader worker ignores Ctrl-C and SIGTERM, which reach a terminal's (or a Slurm job's) whole process
    group: the training process finishes its step and checkpoints (``interrupt.StopRequest``), and that step may
    still need batches. A worker started by spawn or forkserver (macOS, Python 3.14's Linux default) would die of
    the signal, and the step would fail before its checkpoint ("worker exited unexpectedly"); the DataLoader ends
    its workers itself when training stops."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def eval_batches(dataset: Dataset, samples: int, micro_batch: int, dist: DistInfo) -> Iterator[tuple[Any, bool]]:
    """This rank's share of the first ``samples`` held-out samples, in micro-batches on its device.

    Every rank yields the same number of micro-batches, because under FSDP each forward gathers the weights from
    all ranks: a rank that ran one forward fewer would wait in the next collective while the others gather.
    Rank r holds samples r, r + W, ..., so shares differ by at most one sample, and that can cost a micro-batch
    (9 samples, W = 2, micro-batch 4: rank 0 has 5 samples in 2 micro-batches, rank 1 has 4 in 1). A rank
    whose share ends early repeats its first sample, flagged as not counted.

    Yields:
        (batch, counted): counted is False for a repeat, whose metrics must be left out.
    """
    count = min(len(dataset), samples)
    indices = list(range(dist.rank, count, dist.world_size))  # at least one (``micro_batch_size`` checks)
    largest_share = -(-count // dist.world_size)  # rank 0's
    for start in range(0, largest_share, micro_batch):
        chunk = indices[start : start + micro_batch]
        batch = default_collate([dataset[i] for i in chunk or indices[:1]])
        yield to_device(batch, dist.device), bool(chunk)


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or lists, tuples and dicts of them) on ``device``; other values as they are."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch
