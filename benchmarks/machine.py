"""What every benchmark needs to time fairly and name the machine: device synchronisation, the matmul peak
measured in the same run, and the machine's name. (The scripts import it as a sibling module.)"""

from __future__ import annotations

import argparse
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


def thread_count(text: str) -> int:
    """``--threads`` as a positive int; anything else is a usage error (torch would raise a traceback later)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"needs a positive whole number of CPU threads, got {text!r}")
    return count


def add_threads_argument(parser, threads: int = 2) -> None:
    """``--threads``: the CPU threads of torch's intra-op pool (apply it with :func:`set_threads`)."""
    parser.add_argument("--threads", type=thread_count, default=threads, help=f"CPU threads (default: {threads})")


def set_threads(args) -> int:
    """Apply ``--threads``; returns the count torch now uses, which every benchmark prints with the machine."""
    torch.set_num_threads(args.threads)
    return torch.get_num_threads()


def add_machine_arguments(parser, threads: int = 2) -> None:
    """``--threads`` and ``--device``, the two flags every benchmark takes."""
    add_threads_argument(parser, threads)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")


def machine_from_arguments(args) -> torch.device:
    """Apply ``--threads`` and return the ``--device`` (see :func:`add_machine_arguments`)."""
    set_threads(args)
    return benchmark_device(args.device)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# The side of the product that a tiny run (``--tiny``: checking that a script runs) measures its "peak" with: a
# 2048-sided CPU product alone takes seconds, longer than the whole tiny run, and a tiny run's figures mean nothing.
TINY_PEAK_SIZE = 256


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, repeats: int = 5, size: int | None = None) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the reachable peak of this machine, measured now.

    ``size`` (default: 8192 on a GPU, 2048 on a CPU) is the side of the product; smaller ones fall short of the
    peak (:data:`TINY_PEAK_SIZE` is for tiny runs only).
    """
    if size is None:
        size = 8192 if device.type == "cuda" else 2048  # a GPU needs a larger product to reach its peak
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


# The instruction sets that decide which CPU kernels are fast (bf16 and int8 paths; see RESULTS.md).
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16")


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and the instruction sets of :data:`CPU_FLAGS` it has (CPUs of one
    machine type differ: bf16 is fast on some and hundreds of times slower on others)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux
        pass
    arch = platform.machine() or platform.processor()
    if not model:
        return platform.processor() or arch
    present = [flag for flag in CPU_FLAGS if flag in flags]
    return f"{model} ({arch}; {', '.join(present) or 'none of ' + '/'.join(CPU_FLAGS)})"


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


def reset_peak_memory(device: torch.device) -> bool:
    """Open a peak-memory window: the CUDA allocator's peak on a GPU, the process's peak RSS on a CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    return reset_cpu_peak()


def peak_memory(device: torch.device, was_reset: bool) -> str:
    """The peak since :func:`reset_peak_memory`, as text: CUDA max allocated, or the CPU's peak RSS."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return cpu_peak_gib(was_reset)
