"""Shared fixtures of the evaluation tests."""

import pytest


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A random 32 px, 10-class, grayscale pipeline (scales 1, 2, 4, 8)."""
    from tiny_models import gray_32px_pipeline

    return gray_32px_pipeline(tmp_path_factory.mktemp("eval-model") / "pipe")
