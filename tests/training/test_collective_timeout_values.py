"""--dist-timeout values that torch cannot use are refused in one line naming the flag, with or without torchrun."""

import datetime
import logging
import math

import pytest

from nextscale import distributed


@pytest.mark.parametrize("seconds", [0.0, -5.0, math.nan, math.inf, 1e20])
def test_unusable_timeouts_name_the_flag(seconds):
    with pytest.raises(ValueError, match="--dist-timeout must be a positive, finite number of seconds"):
        distributed.collective_timeout(seconds)


def test_a_usable_timeout_becomes_a_timedelta():
    assert distributed.collective_timeout(90.0) == datetime.timedelta(seconds=90)


def test_a_single_process_refuses_the_flag_as_torchrun_would(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="--dist-timeout"):
        distributed.init_distributed(device="cpu", timeout_s=0.0)
    assert distributed.init_distributed(device="cpu", timeout_s=60.0).world_size == 1


def test_lines_before_the_process_group_are_printed_by_rank_zero_only(monkeypatch, caplog):
    # torchrun's rank 1 parsing its flags and reading its data: no group yet, only the launcher's RANK
    monkeypatch.setenv("WORLD_SIZE", "2")
    logger = distributed.get_logger("nextscale.test_before_group")
    with caplog.at_level(logging.INFO, logger="nextscale.test_before_group"):
        monkeypatch.setenv("RANK", "1")
        logger.info("from rank one")
        monkeypatch.setenv("RANK", "0")
        logger.info("from rank zero")
    assert "from rank zero" in caplog.text and "from rank one" not in caplog.text
