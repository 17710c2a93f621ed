"""Paths of the shared reference fixtures (../shared/reference beside the checkout).

Tests that use them fail, never skip, when they are missing: a green run must mean the parity was checked.
"""

from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
VAR_PARITY = REFERENCE / "var_parity"
STAR_PARITY = REFERENCE / "star_parity"


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise fail the test with the fix."""
    if not path.exists():
        pytest.fail(f"reference fixture {path} is missing: place the team's shared/ folder beside the checkout")
    return path
