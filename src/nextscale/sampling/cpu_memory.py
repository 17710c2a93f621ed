"""Keep freed memory inside the process during CPU sampling calls, so big activations reuse warm pages.

glibc serves every allocation above its mmap threshold (at most 32 MB) with fresh pages from the kernel and
returns freed memory at the top of the heap to the kernel. A sampling call allocates its large activations
anew at every layer and scale (a d16 call at B = 8 allocates about 14 GB of short-lived tensors), so each is
page-faulted in from scratch: on the project's CPU a fresh 178 MB GELU output costs 57 ms to allocate and
touch against 4 ms to refill a kept one, and GELU itself takes 94 ms out of place against 38 ms into an
existing buffer. Inside :func:`retained_cpu_memory` glibc takes every allocation from the heap (no mmap) and
never trims it, so freed activations are reused without new page faults; on exit large allocations are
mapped again and the heap is trimmed, so the memory goes back to the kernel. (glibc's own defaults cannot come
back: any ``mallopt`` of these settings switches off for good its rise of the mmap threshold, from 128 KiB up to
32 MiB as large blocks are freed, after which every allocation of 128 KiB to 32 MiB would be mapped afresh, with
its page faults, for the rest of the process. So the exit sets that rise's end point: heap allocations up to
32 MiB, a 64 MiB trim threshold.) Numbers are untouched (only where memory
comes from changes); measured on a d16 call at B = 4: 25.4 s -> 22.9 s in float32 (``benchmarks/RESULTS.md``).

A :class:`MemoryHold` keeps the context open **across calls** (what a pipeline does, like PyTorch's CUDA
caching allocator keeps freed blocks until ``empty_cache()``): trimming at the end of every call would hand
the working set back to the kernel only to fault it in again at the next call (a d16 B = 1 call: 69,000
page faults per call when trimmed at its end, about 1,000 from the second call on when held). ``release()``
(or the owner's garbage collection) gives the memory back.

Linux with glibc only (``mallopt`` / ``malloc_trim``); elsewhere the context does nothing. The setting is
process-wide while a context is open (other threads allocate the same way meanwhile); contexts nest.

References: ``mallopt(3)`` (M_MMAP_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD), ``malloc_trim(3)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
import weakref

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
# The settings on exit: glibc's default M_MMAP_MAX, and the end point of its dynamic thresholds (the mmap threshold's
# ceiling DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB on 64-bit systems, and a trim threshold of twice it), which a process
# that frees large blocks reaches and which no mallopt call can switch back on (see the module doc).
DEFAULT_MMAP_MAX = 65536
EXIT_MMAP_THRESHOLD = 4 * 2**20 * ctypes.sizeof(ctypes.c_long)
EXIT_TRIM_THRESHOLD = 2 * EXIT_MMAP_THRESHOLD
LARGEST_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap top

_lock = threading.Lock()
_depth = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (has mallopt and malloc_trim), else None; looked up at the first use, not at
    import (``find_library`` runs ``ldconfig``)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") and hasattr(libc, "gnu_get_libc_version")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def supported() -> bool:
    """Whether this process's C library lets :func:`retained_cpu_memory` act (glibc)."""
    return _glibc() is not None


@contextlib.contextmanager
def retained_cpu_memory():
    """While open, the C library keeps freed memory for reuse instead of returning it (see the module doc)."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, LARGEST_TRIM_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, EXIT_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, EXIT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


class MemoryHold:
    """:func:`retained_cpu_memory` held open from :meth:`acquire` until :meth:`release` or until ``owner`` is
    garbage-collected. While held, the setting is process-wide: every allocation of the process comes from the
    heap and freed memory stays with the process (its resident size stays at its peak)."""

    def __init__(self, owner: object) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._owner = weakref.ref(owner)
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    @property
    def held(self) -> bool:
        return self._stack is not None

    def acquire(self) -> None:
        """Open the context (no-op when already held)."""
        with self._lock:  # two threads must not both open one (the second would never be closed)
            if self._stack is None:
                stack = contextlib.ExitStack()
                stack.enter_context(retained_cpu_memory())
                self._stack = stack
                owner = self._owner()
                if owner is not None:
                    self._finalizer = weakref.finalize(owner, stack.close)

    def release(self) -> None:
        """Close the context: large allocations are mapped again and the freed heap goes back to the kernel."""
        with self._lock:
            if self._stack is not None:
                if self._finalizer is not None:
                    self._finalizer.detach()
                stack, self._stack = self._stack, None
                stack.close()
