"""A batch sampler that shards across ranks and resumes at the exact sample.

Every epoch shuffles the dataset with a permutation drawn from ``(seed, epoch)`` alone, so all ranks agree on
it without talking to each other. The permutation is cut into *global* batches of
``batch_size * world_size`` samples and rank ``r`` takes positions ``r, r + world_size, ...`` of each global
batch. Worked example, 8 samples, permutation ``[5 2 7 0 3 6 1 4]``, per-rank batch 2, two ranks:

    global batch 0 = [5 2 7 0]  ->  rank 0: [5 7]   rank 1: [2 0]
    global batch 1 = [3 6 1 4]  ->  rank 0: [3 1]   rank 1: [6 4]

One process with batch 4 sees ``[5 2 7 0]`` then ``[3 6 1 4]``: the same samples per step, so changing the
number of GPUs at a fixed global batch does not change what the model trains on.

The position is ``(epoch, step)``: the next batch to yield. ``state_dict`` / ``load_state_dict`` carry it in a
training checkpoint. A DataLoader prefetches batches ahead of the training step, so a trainer should save the
position of the batches it has *consumed*: ``state_for_step(global_step)``.

References: VAR ``utils/data_sampler.py`` (``DistInfiniteBatchSampler``), torch ``DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


class ResumableDistributedSampler:
    """Yields lists of dataset indices for one rank, epoch after epoch, resumable mid-epoch.

    Args:
        dataset_len: number of samples in the dataset.
        batch_size: samples per batch on this rank (the global batch is ``batch_size * world_size``).
        rank: this process's rank in [0, world_size).
        world_size: number of processes sharing the data.
        shuffle: draw a fresh permutation every epoch (False: the identity order every epoch).
        seed: seed of the per-epoch permutations; must be the same on every rank.
        drop_last: drop the final incomplete global batch (True), or complete it by wrapping around to the
            start of the epoch's order (False; a few samples then appear twice, as in torch's DistributedSampler).

    Iterating yields the remaining batches of the current epoch and then moves to the next epoch, so a fresh
    ``iter(sampler)`` (or a DataLoader over it) each epoch walks the whole run. ``len(sampler)`` is the number
    of batches per epoch, the same on every rank.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if dataset_len < 1:
            raise ValueError(f"dataset_len must be at least 1, got {dataset_len}; the dataset is empty")
        if seed < 0:
            raise ValueError(f"seed must be 0 or more (it seeds numpy.random.default_rng), got {seed}")
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.global_batch_size = batch_size * world_size
        if drop_last and dataset_len < self.global_batch_size:
            raise ValueError(
                f"the dataset has {dataset_len} samples, fewer than one global batch of {self.global_batch_size} "
                f"(batch_size {batch_size} x world_size {world_size}); lower the batch size or pass drop_last=False"
            )
        self.epoch = 0
        self.step = 0

    def __len__(self) -> int:
        if self.drop_last:
            return self.dataset_len // self.global_batch_size
        return -(-self.dataset_len // self.global_batch_size)  # ceiling division

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The dataset order of ``epoch`` (identical on every rank), int64 (dataset_len,)."""
        if not self.shuffle:
            return np.arange(self.dataset_len, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.dataset_len).astype(np.int64)

    def global_batch(self, epoch: int, step: int) -> list[int]:
        """All ranks' samples of one step, in global order (rank ``r`` owns positions ``r::world_size``)."""
        if not 0 <= step < len(self):
            raise ValueError(f"step must be in [0, {len(self)}), got {step}")
        order = self.epoch_order(epoch)
        start = step * self.global_batch_size
        positions = np.arange(start, start + self.global_batch_size) % self.dataset_len  # wraps only if not drop_last
        return order[positions].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        order = self.epoch_order(epoch)
        while self.epoch == epoch and self.step < len(self):
            start = self.step * self.global_batch_size
            positions = np.arange(start, start + self.global_batch_size) % self.dataset_len
            batch = order[positions[self.rank :: self.world_size]].tolist()
            self.step += 1
            yield batch
        if self.epoch == epoch:  # finished the epoch (not interrupted by load_state_dict)
            self.epoch, self.step = epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        """Position of the next batch to yield, plus what must match on resume."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "seed": self.seed,
            "dataset_len": self.dataset_len,
            "global_batch_size": self.global_batch_size,
            "shuffle": self.shuffle,
        }

    def state_for_step(self, global_step: int) -> dict[str, Any]:
        """The state to save after ``global_step`` batches were consumed since epoch 0, step 0.

        Use it instead of ``state_dict()`` when a DataLoader has already drawn batches the model has not seen.
        """
        if global_step < 0:
            raise ValueError(f"global_step must be >= 0, got {global_step}")
        epoch, step = divmod(global_step, len(self))
        return {**self.state_dict(), "epoch": epoch, "step": step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``'s position; the seed, dataset and global batch must match those it was saved with.

        The world size may differ as long as the global batch (``batch_size * world_size``) is the same.
        """
        for key in ("seed", "dataset_len", "global_batch_size", "shuffle"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state was saved with {key}={state[key]!r} but this sampler has {getattr(self, key)!r}; "
                    "resume with the same seed, dataset and global batch size (batch_size x world_size)"
                )
        epoch, step = int(state["epoch"]), int(state["step"])
        if epoch < 0 or not 0 <= step <= len(self):
            raise ValueError(f"sampler state has an invalid position (epoch {epoch}, step {step})")
        if step == len(self):  # saved right after the last batch of an epoch
            epoch, step = epoch + 1, 0
        self.epoch, self.step = epoch, step
