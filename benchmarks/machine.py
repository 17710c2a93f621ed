"""What every benchmark needs to time fairly and name the machine: device synchronisation, the matmul peak
measured in the same run, and the machine's name. (The scripts import it as a sibling module.)"""

from __future__ import annotations

import platform
import resource
import sys
import time
from pathlib import Path

import torch


def benchmark_device(name: str) -> torch.device:
    """``--device`` as a torch.device; a device this machine lacks ends the script with one line, not a traceback."""
    from nextscale.pretrained import usable_device

    try:
        return usable_device(name, "--device")
    except ValueError as err:
        raise SystemExit(f"{Path(sys.argv[0]).name}: {err}") from None


def add_machine_arguments(parser, threads: int = 2) -> None:
    """``--threads`` and ``--device``, the two flags every benchmark takes."""
    parser.add_argument("--threads", type=int, default=threads, help=f"CPU threads (default: {threads})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")


def machine_from_arguments(args) -> torch.device:
    """Apply ``--threads`` and return the ``--device`` (see :func:`add_machine_arguments`)."""
    torch.set_num_threads(args.threads)
    return benchmark_device(args.device)


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


def reset_cpu_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def cpu_peak_gib(was_reset: bool) -> str:
    """The process's peak resident set since :func:`reset_cpu_peak` (or over its whole life where that failed)."""
    if was_reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return f"{int(line.split()[1]) / 2**20:.2f} GiB RSS"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS (process max)"
