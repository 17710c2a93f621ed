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
