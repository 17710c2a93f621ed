"""Training checkpoints: bit-exact round trip, newest-N pruning, corrupt files skipped with a clear error."""

import random

import numpy as np
import pytest
import torch

from nextscale.presets import tiny
from nextscale.training import checkpoint as ckpt
from nextscale.training.ema import EMA
from nextscale.training.optim import build_adamw
from nextscale.transformer.model import ScaleTransformer


def _trained_state():
    torch.manual_seed(0)
    _, config = tiny()
    model = ScaleTransformer(config)
    optimizer = build_adamw(model, 1e-3)
    ema = EMA(model, 0.9)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for _ in range(2):
        labels = torch.randint(0, 10, (2,))
        teacher = torch.randn(2, config.schedule.total_tokens - 1, config.code_dim)
        model(labels, teacher).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update(model)
    return {
        "step": 2,
        "models": {"model": model.state_dict()},
        "ema": ema.state_dict(),
        "optimizers": {"model": optimizer.state_dict()},
        "scaler": scaler.state_dict(),
        "configs": {"transformer": {"depth": 2, "sides": [1, 2, 4]}},
        "sampler": {"epoch": 1, "step": 3},
        "rng": [ckpt.capture_rng_state()],
    }


def _assert_equal(a, b):
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def test_round_trip_is_bit_exact(tmp_path):
    state = _trained_state()
    path = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 2), state)
    _assert_equal(state, ckpt.load_checkpoint(path))


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = ckpt.capture_rng_state()
    ckpt.save_checkpoint(tmp_path / "checkpoints" / "step-00000001.pt", {"step": 1, "rng": state})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.restore_rng_state(ckpt.load_checkpoint(tmp_path / "checkpoints" / "step-00000001.pt")["rng"])
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])


def test_keep_newest_and_latest(tmp_path):
    for step in (5, 10, 15, 20):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), {"step": step})
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000020.pt"
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000015.pt", "step-00000020.pt"]
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None


def test_corrupt_checkpoint_falls_back_with_warning(tmp_path, caplog):
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 1), {"step": 1})
    bad = ckpt.checkpoint_path(tmp_path, 2)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="step-00000002.pt"):
        ckpt.load_checkpoint(bad)
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 1 and path.name == "step-00000001.pt"
    assert "step-00000002.pt" in caplog.text


def test_every_checkpoint_corrupt_is_an_error(tmp_path):
    path = ckpt.checkpoint_path(tmp_path, 3)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint"):
        ckpt.load_latest(tmp_path)
