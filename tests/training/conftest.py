"""Fixtures of the training tests."""

import pytest
from training_helpers import tiny_data


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every training test runs on one intra-op thread (see the root conftest's ``one_thread``)."""


@pytest.fixture
def data():
    return tiny_data()
