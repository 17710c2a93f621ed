"""Fixtures of the training tests."""

import pytest
from training_helpers import tiny_data


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared 2-core machine two spinning OpenMP threads
    per process slow a step down 10-20x. Restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def data():
    return tiny_data()
