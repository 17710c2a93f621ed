"""The allocator context keeps freed memory for reuse (no fresh page faults) and restores the defaults."""

import gc
import resource

import pytest
import torch

from nextscale.sampling import cpu_memory

pytestmark = pytest.mark.skipif(not cpu_memory.supported(), reason="needs glibc (Linux)")

MIB = 2**20


@pytest.fixture(autouse=True)
def no_pipeline_holds_memory():
    """Pipelines of earlier tests keep memory until released (a web app of an earlier test may keep its pipelines
    alive); these tests need glibc's defaults at the start, so release every hold (a pipeline takes it again at
    its next call)."""
    for hold in [obj for obj in gc.get_objects() if type(obj) is cpu_memory.MemoryHold]:
        hold.release()
    assert cpu_memory._depth == 0


def faults_of_second_allocation(size_bytes: int) -> int:
    """Minor page faults taken by allocating and touching a buffer right after an equal one was freed."""
    torch.empty(size_bytes // 4).fill_(1.0)  # allocate, touch, free
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(size_bytes // 4).fill_(2.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def warm_up(size_bytes: int) -> None:
    """Allocate and free until the heap has grown enough that an aligned block of this size fits in its freed
    space twice in a row: an aligned request is a little larger than the block freed before it, so the heap
    grows for a few rounds (three to five for 64 MB here, depending on what it held before) until freed blocks
    have coalesced."""
    warm_rounds = 0
    for _ in range(16):
        warm_rounds = warm_rounds + 1 if faults_of_second_allocation(size_bytes) < size_bytes // 4096 // 20 else 0
        if warm_rounds == 2:
            return


def test_freed_activations_are_reused_without_page_faults_inside_the_context():
    pages = 64 * MIB // 4096
    outside = faults_of_second_allocation(64 * MIB)  # > 32 MB: glibc maps fresh pages every time
    with cpu_memory.retained_cpu_memory():
        warm_up(64 * MIB)
        inside = faults_of_second_allocation(64 * MIB)
    assert outside > pages // 2  # every page of the new buffer faulted in again
    assert inside < pages // 20  # the freed buffer's warm pages were reused


def test_contexts_nest_and_restore_the_defaults():
    with cpu_memory.retained_cpu_memory():
        with cpu_memory.retained_cpu_memory():
            assert cpu_memory._depth == 2
        assert cpu_memory._depth == 1
    assert cpu_memory._depth == 0
    assert faults_of_second_allocation(64 * MIB) > 64 * MIB // 4096 // 2  # back to fresh pages


class Owner:
    """Anything a hold can belong to (a pipeline in practice)."""


def test_a_hold_keeps_memory_across_calls_until_released():
    owner = Owner()
    hold = cpu_memory.MemoryHold(owner)
    hold.acquire()
    hold.acquire()  # a second call keeps the one hold
    assert hold.held and cpu_memory._depth == 1
    warm_up(64 * MIB)
    assert faults_of_second_allocation(64 * MIB) < 64 * MIB // 4096 // 20  # between "calls": still warm
    hold.release()
    assert not hold.held and cpu_memory._depth == 0
    assert faults_of_second_allocation(64 * MIB) > 64 * MIB // 4096 // 2  # given back: fresh pages again


def test_a_hold_is_released_when_its_owner_is_collected():
    owner = Owner()
    cpu_memory.MemoryHold(owner).acquire()
    assert cpu_memory._depth == 1
    del owner  # the finalizer closes the context (CPython frees the owner at once)
    assert cpu_memory._depth == 0
