"""distributed.py in a single process: rank-0 logging, wrapping and unwrapping, reductions."""

import logging

import pytest
import torch
from torch import nn

from nextscale import distributed


def test_single_process_info_and_reductions(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.is_main, info.device.type) == (0, 1, True, "cpu")
    x = torch.tensor([1.0, 3.0])
    assert torch.equal(distributed.all_reduce_mean(x), x) and distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    distributed.barrier()


def test_bad_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5"):
        distributed.init_distributed(device="cpu")


def test_logger_emits_on_rank_zero_only(monkeypatch, caplog):
    logger = distributed.get_logger("nextscale.test")
    with caplog.at_level(logging.INFO, logger="nextscale.test"):
        logger.info("from rank zero")
        monkeypatch.setattr(distributed, "get_rank", lambda: 1)
        logger.info("from rank one")
    assert "from rank zero" in caplog.text and "from rank one" not in caplog.text


def test_wrap_and_unwrap():
    model = nn.Linear(2, 2)
    assert distributed.wrap_model(model, "ddp") is model  # a single process needs no DDP
    assert distributed.unwrap(model) is model
    with pytest.raises(ValueError, match="strategy"):
        distributed.wrap_model(model, "zero3")
    state = distributed.full_state_dict(model)
    assert set(state) == {"weight", "bias"} and state["weight"].device.type == "cpu"
