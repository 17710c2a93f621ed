from pathlib import Path

import pytest
import torch

from reference_fixtures import require

PARITY_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "var_parity"


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    require(PARITY_DIR / "var_parity_d2.pt")
    return PARITY_DIR


@pytest.fixture(scope="session")
def parity(parity_dir) -> dict:
    return torch.load(parity_dir / "var_parity_d2.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def one_thread():
    """One intra-op thread: the tiny models of the tests run fastest so on a shared 2-core machine (two spinning
    OpenMP threads per process slow a step down 10-20x). Restored afterwards; used by whole folders or files
    through ``pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
