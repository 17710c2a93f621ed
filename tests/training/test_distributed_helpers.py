"""distributed.py: rank-0 logging, wrapping and unwrapping, reductions (one process), and the collective helpers
in two gloo processes."""

import logging
import os
import socket
import warnings

import pytest
import torch
import torch.multiprocessing as mp
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


def _collectives_worker(rank: int, port: int, queue) -> None:
    """Many small collectives through the helpers, then the tensors' C++ reference counts."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    counts = []
    with distributed.process_group(device="cpu"):
        kept = torch.zeros(4)
        for step in range(200):
            counts.append(distributed.all_reduce_sum(torch.full((4,), float(step)))._use_count())
            counts.append(distributed.broadcast_tensor(kept)._use_count())
        total = distributed.all_reduce_sum(torch.tensor([float(rank)])).item()
        gathered = distributed.all_gather_objects({"rank": rank, "payload": "x" * (10 + 1000 * rank)})
    queue.put((rank, counts, total, gathered))


@pytest.mark.slow  # about 5 s: two gloo processes
def test_collective_helpers_return_after_gloo_has_released_their_tensors():
    """gloo's worker thread drops a collective's tensors just after the caller returns (about one call in five
    without the wait). A tensor Python has seen takes the GIL to drop: during interpreter shutdown that aborts
    the process, so the helpers return only once the worker holds nothing: a reference count of one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_collectives_worker, args=(rank, port, queue)) for rank in range(2)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    expected = [{"rank": rank, "payload": "x" * (10 + 1000 * rank)} for rank in range(2)]
    for _, counts, total, gathered in results:
        assert total == 1.0 and len(counts) == 400 and set(counts) == {1}
        assert gathered == expected  # objects of different sizes, in rank order


def test_only_fsdp2s_view_warning_is_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distributed.quiet_fsdp_view_warning()
        warnings.warn(
            "FSDP2-wrapped module (FSDPScaleTransformer) returned a view tensor. An in-place op ...",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("FSDP2 something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["FSDP2 something else"]
