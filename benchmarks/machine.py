"""What every benchmark needs to time fairly and name the machine: device synchronisation, the matmul peak
measured in the same run, and the machine's name. (The scripts import it as a sibling module.)"""

from __future__ import annotations

import platform
import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the reachable peak of this machine, measured now."""
    size = 8192 if device.type == "cuda" else 2048  # a GPU needs a larger product to reach its peak
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture string."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
