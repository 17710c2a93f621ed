"""The allocator context keeps freed memory for reuse (no fresh page faults) and restores the defaults."""

import gc
import json
import subprocess
import sys
import textwrap

import pytest

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


# The page-fault measurements run in a fresh interpreter: in a long test session the heap can hold a large
# free chunk below live objects (left by an earlier test's pipeline), and glibc then serves a 64 MB request
# from that chunk's already-touched pages even with its defaults, which would hide what the defaults do.
FAULT_SCENARIOS = textwrap.dedent(
    """
    import json, resource
    import torch
    from nextscale.sampling import cpu_memory

    MIB = 2**20
    SIZE = 64 * MIB  # > 32 MB: with glibc's defaults every such buffer is mapped afresh


    def faults_of_second_allocation():
        # minor page faults taken by allocating and touching a buffer right after an equal one was freed
        torch.empty(SIZE // 4).fill_(1.0)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(SIZE // 4).fill_(2.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


    def warm_up():
        # an aligned request is a little larger than the block freed before it, so the heap grows for a few
        # rounds (three to five for 64 MB) until freed blocks have coalesced: wait for two warm rounds in a row
        warm_rounds = 0
        for _ in range(16):
            warm_rounds = warm_rounds + 1 if faults_of_second_allocation() < SIZE // 4096 // 20 else 0
            if warm_rounds == 2:
                return


    class Owner:
        pass


    faults = {"defaults": faults_of_second_allocation()}
    with cpu_memory.retained_cpu_memory():
        warm_up()
        faults["inside"] = faults_of_second_allocation()
    faults["after_context"] = faults_of_second_allocation()
    owner = Owner()
    hold = cpu_memory.MemoryHold(owner)
    hold.acquire()
    warm_up()
    faults["held_between_calls"] = faults_of_second_allocation()
    hold.release()
    faults["after_release"] = faults_of_second_allocation()
    print(json.dumps(faults))
    """
)
PAGES = 64 * MIB // 4096


@pytest.fixture(scope="module")
def faults() -> dict[str, int]:
    """Minor page faults of a second 64 MB allocation in each situation, measured in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", FAULT_SCENARIOS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_freed_activations_are_reused_without_page_faults_inside_the_context(faults):
    assert faults["defaults"] > PAGES // 2  # every page of the new buffer faulted in again
    assert faults["inside"] < PAGES // 20  # the freed buffer's warm pages were reused


def test_contexts_nest_and_restore_the_defaults(faults):
    with cpu_memory.retained_cpu_memory():
        with cpu_memory.retained_cpu_memory():
            assert cpu_memory._depth == 2
        assert cpu_memory._depth == 1
    assert cpu_memory._depth == 0
    assert faults["after_context"] > PAGES // 2  # back to fresh pages


# A process that opens the context before it frees any block of a few MB: glibc's mmap threshold is still at
# 128 KiB, and after the context 4 MB blocks must come from the heap as they would in a process that never opened
# one (glibc raises the threshold as they are freed). Setting glibc's "defaults" back on exit would have switched
# that rise off for good: every 4 MB block mapped afresh, 1025 page faults each, for the rest of the process.
MID_SIZE_AFTER_CONTEXT = textwrap.dedent(
    """
    import resource
    import torch
    from nextscale.sampling import cpu_memory

    with cpu_memory.retained_cpu_memory():
        pass


    def faults_of_mid_size_allocations():
        torch.empty(2**20).fill_(1.0)  # 4 MB
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(2**20).fill_(2.0)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


    print(min(faults_of_mid_size_allocations() for _ in range(3)))
    """
)


def test_blocks_of_a_few_megabytes_stay_on_the_heap_after_the_context():
    done = subprocess.run([sys.executable, "-c", MID_SIZE_AFTER_CONTEXT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    fresh_pages = 10 * 4 * MIB // 4096
    assert int(done.stdout.strip().splitlines()[-1]) < fresh_pages // 20


class Owner:
    """Anything a hold can belong to (a pipeline in practice)."""


def test_a_hold_keeps_memory_across_calls_until_released(faults):
    owner = Owner()
    hold = cpu_memory.MemoryHold(owner)
    hold.acquire()
    hold.acquire()  # a second call keeps the one hold
    assert hold.held and cpu_memory._depth == 1
    hold.release()
    assert not hold.held and cpu_memory._depth == 0
    assert faults["held_between_calls"] < PAGES // 20  # between "calls": still warm
    assert faults["after_release"] > PAGES // 2  # given back: fresh pages again


def test_a_hold_is_released_when_its_owner_is_collected():
    owner = Owner()
    cpu_memory.MemoryHold(owner).acquire()
    assert cpu_memory._depth == 1
    del owner  # the finalizer closes the context (CPython frees the owner at once)
    assert cpu_memory._depth == 0
