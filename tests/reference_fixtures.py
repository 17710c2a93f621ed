"""Paths of the shared reference fixtures (../shared/reference beside the checkout).

In CI (``CI`` set to a true value, as ``.ci/run`` and hosted CI services do) a missing fixture FAILS the test:
a green CI run must mean the parity was checked. A developer without the team's shared/ folder gets a skip
that says what is missing and how to get it.
"""

import os
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
VAR_PARITY = REFERENCE / "var_parity"
STAR_PARITY = REFERENCE / "star_parity"

# Every file the parity tests read; tests/test_reference_fixtures.py checks them all up front.
REQUIRED = (
    VAR_PARITY / "var_parity_d2.pt",
    VAR_PARITY / "var_d2.pth",
    VAR_PARITY / "vqvae.pth",
    REFERENCE / "var_state_dict_keys.json",
    REFERENCE / "star_state_dict_keys.json",
    STAR_PARITY / "star_parity_d2.pt",
    STAR_PARITY / "star_d2.pth",
    STAR_PARITY / "star_parity_meta.json",
)


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty, 0, false or no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(path: Path) -> Path:
    """``path`` if it exists; otherwise fail the test in CI, or skip it locally, saying how to fix it."""
    if not path.exists():
        fix = f"reference fixture {path} is missing: place the team's shared/ folder beside the checkout"
        if in_ci():
            pytest.fail(f"{fix} (CI must check parity; a CI run without the fixtures is red)", pytrace=False)
        pytest.skip(f"{fix} (skipped locally; CI fails instead)")
    return path
