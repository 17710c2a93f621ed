"""The official reference fixtures are checked, never silently skipped, in CI."""

import pytest

from reference_fixtures import REQUIRED, in_ci, require


@pytest.mark.parametrize("path", REQUIRED, ids=lambda path: path.name)
def test_reference_fixture_is_present(path):
    """Red in a CI run that lost ../shared/reference (skipped, with the reason, on a machine without it)."""
    require(path)
    assert path.stat().st_size > 0, f"reference fixture {path} is empty"


def test_missing_fixture_fails_in_ci(monkeypatch, tmp_path):
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        assert in_ci()
        with pytest.raises(pytest.fail.Exception, match="missing.*CI must check parity"):
            require(tmp_path / "missing.pt")


def test_missing_fixture_skips_locally_with_the_reason(monkeypatch, tmp_path):
    for value in (None, "", "false", "0"):
        if value is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", value)
        assert not in_ci()
        with pytest.raises(pytest.skip.Exception, match="missing.pt is missing: place the team's shared/ folder"):
            require(tmp_path / "missing.pt")
    assert require(tmp_path) == tmp_path
