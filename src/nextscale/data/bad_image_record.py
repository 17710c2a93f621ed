"""Files found bad in DataLoader worker processes, shared with the main process through shared memory.

Workers hold copies of the dataset, so a file one of them finds bad would otherwise stay unknown to the main
process (which counts and names bad files) and to later epochs' workers (which would try it, and warn, again).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from nextscale.data.image_reading import BAD_IMAGE_REASONS

logger = logging.getLogger(__name__)


def shared_bytes(count: int) -> torch.Tensor:
    """(count,) uint8 zeros in shared memory, which DataLoader workers write into and the main process reads; where
    shared memory cannot be had (a full or missing /dev/shm, as in small containers) a private tensor, so the
    dataset still works, its workers' findings then staying in the workers (as before they were shared)."""
    found = torch.zeros(count, dtype=torch.uint8)
    try:
        return found.share_memory_()
    except RuntimeError as err:
        logger.warning("no shared memory for the bad-file record (%s): files found bad in workers are not counted", err)
        return found


class WorkerBadFiles:
    """One byte per listed file in shared memory: 0, or 1 + the index of its reason in ``BAD_IMAGE_REASONS``.

    Positions are in ``listing`` (the files as listed; a reference, not a copy); the file -> position map is built
    only when a bad file is recorded (rare), not in every worker. Copies of the dataset share this record.

    Args:
        listing: the dataset's files in listing order.
    """

    def __init__(self, listing: list[Path]) -> None:
        self.found = shared_bytes(len(listing))
        self.listing = listing
        self.positions: dict[Path, int] | None = None

    def record(self, path: Path, reason: str) -> None:
        """Note ``path`` as bad for ``reason`` where the main process and other workers read it."""
        if self.positions is None:
            self.positions = {listed: position for position, listed in enumerate(self.listing)}
        position = self.positions.get(path)
        if position is not None and reason in BAD_IMAGE_REASONS:
            self.found[position] = 1 + BAD_IMAGE_REASONS.index(reason)

    def gather_into(self, skipped: dict[Path, str]) -> None:
        """Add the files workers found bad to ``skipped`` (file -> reason), keeping reasons already there."""
        for position in self.found.nonzero().flatten().tolist():
            reason = BAD_IMAGE_REASONS[int(self.found[position]) - 1]
            skipped.setdefault(self.listing[position], reason)
