"""Training checkpoints: bit-exact round trip, newest-N pruning, checksums, damaged or diverged files skipped."""

import hashlib
import json
import logging
import random
import shutil
from types import SimpleNamespace

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


def _two_checkpoints(tmp_path):
    state = _trained_state()
    older = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 1), {**state, "step": 1})
    newer = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 2), state)
    return older, newer


def test_size_and_checksum_are_recorded_beside_each_checkpoint(tmp_path):
    older, newer = _two_checkpoints(tmp_path)
    record = json.loads(ckpt.record_path(newer).read_text())
    assert record["size"] == newer.stat().st_size
    assert record["sha256"] == hashlib.sha256(newer.read_bytes()).hexdigest()
    assert ckpt.verify_checkpoint(newer) and ckpt.verify_checkpoint(older)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [older.name, newer.name]  # records are not listed
    ckpt.prune_checkpoints(tmp_path, keep=1)
    assert not older.exists() and not ckpt.record_path(older).exists() and ckpt.record_path(newer).exists()


def _flip_one_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the stored tensors: torch.load alone would not notice
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 100])


@pytest.mark.parametrize("damage", [_flip_one_byte, _truncate], ids=["one-byte", "truncated"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, caplog, damage):
    older, newer = _two_checkpoints(tmp_path)
    damage(newer)
    with pytest.raises(ckpt.CheckpointError, match="step-00000002.pt is (corrupt|truncated)"):
        ckpt.load_checkpoint(newer)
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        state, path = ckpt.load_latest(tmp_path)
    assert path == older and state["step"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(newer) in warnings[0] and str(older) in warnings[0]


def test_checkpoint_without_a_record_loads_unverified(tmp_path):
    _, newer = _two_checkpoints(tmp_path)
    ckpt.record_path(newer).unlink()  # as written by an older version
    assert not ckpt.verify_checkpoint(newer)
    assert ckpt.load_latest(tmp_path)[1] == newer


def test_checkpoint_without_a_record_is_still_checked_against_its_zip_crcs(tmp_path, caplog):
    older, newer = _two_checkpoints(tmp_path)
    ckpt.record_path(newer).unlink()
    _flip_one_byte(newer)  # a bit flipped inside a stored tensor: torch.load reads it as a wrong weight
    with pytest.raises(ckpt.CheckpointError, match="step-00000002.pt is corrupt: its member .* CRC-32"):
        ckpt.load_checkpoint(newer)
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        assert ckpt.load_latest(tmp_path)[1] == older


def test_pruning_never_gives_up_good_checkpoints_for_a_later_unreadable_one(tmp_path):
    for step in (10, 20, 30):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, step), {"step": step})
    damaged = ckpt.checkpoint_path(tmp_path, 35)
    damaged.write_bytes(ckpt.checkpoint_path(tmp_path, 30).read_bytes()[:50])  # skipped at resume
    assert ckpt.load_latest(tmp_path)[0]["step"] == 30
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 33), {"step": 33})  # resumed at 30, saved 33
    ckpt.prune_checkpoints(tmp_path, keep=1, saved_step=33)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000033.pt", "step-00000035.pt"]
    assert ckpt.load_latest(tmp_path)[0]["step"] == 33


def test_a_failed_torch_save_is_a_write_error_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(state, file):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1408256 vs 1408144")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    path = ckpt.checkpoint_path(tmp_path, 1)
    with pytest.raises(OSError, match="writing step-00000001.pt failed .*is the disk full"):
        ckpt.save_checkpoint(path, {"step": 1})
    assert sorted(p.name for p in path.parent.iterdir()) == []


def test_a_torch_save_that_filled_the_disk_says_so(tmp_path, monkeypatch):
    # torch's zip writer fails on a full disk with a RuntimeError and no errno ("[enforce fail at
    # inline_container.cc:672] ."); the free space left tells it, so the run's message says to free disk space
    from nextscale.training.failures import CheckpointWriteError

    def full_disk(state, file):
        raise RuntimeError("[enforce fail at inline_container.cc:672] .")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=1 << 30, used=1 << 30, free=4096))
    path = ckpt.checkpoint_path(tmp_path, 2)
    with pytest.raises(OSError, match="writing step-00000002.pt failed: no space left on device") as caught:
        ckpt.save_checkpoint(path, {"step": 2})
    message = str(CheckpointWriteError(path, caught.value, tmp_path, 1))
    assert "no space left on device (ENOSPC)" in message and message.endswith("once you free some disk space")
    assert "enforce fail" not in message and sorted(p.name for p in path.parent.iterdir()) == []


def test_non_finite_weights_are_refused(tmp_path, caplog):
    state = _trained_state()
    good = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 1), {**state, "step": 1})
    name = next(iter(state["models"]["model"]))
    state["models"]["model"][name] = state["models"]["model"][name].clone().fill_(float("nan"))
    bad = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 2), state)  # intact file, diverged weights
    assert ckpt.verify_checkpoint(bad)
    with pytest.raises(ckpt.CheckpointError, match=rf"non-finite weights \(NaN or inf in models\.model\.{name}\)"):
        ckpt.load_checkpoint(bad)
    with caplog.at_level(logging.WARNING, logger=ckpt.__name__):
        assert ckpt.load_latest(tmp_path)[1] == good
    assert "non-finite" in caplog.text


def _training_prunes_when(monkeypatch, run_dir, hook):
    """When ``ckpt.<hook>`` is called, a training run writes step 300 and prunes to one checkpoint (step 200 goes)."""
    real = getattr(ckpt, hook)

    def run_saves_then(*args, **kwargs):
        monkeypatch.setattr(ckpt, hook, real)
        if hook == "list_checkpoints":
            listed = real(*args, **kwargs)  # the reader lists step 200 only...
        ckpt.save_checkpoint(ckpt.checkpoint_path(run_dir, 300), {"step": 300})  # ...then the run saves and prunes
        ckpt.prune_checkpoints(run_dir, keep=1, saved_step=300)
        return listed if hook == "list_checkpoints" else real(*args, **kwargs)

    monkeypatch.setattr(ckpt, hook, run_saves_then)


@pytest.mark.parametrize("hook", ["list_checkpoints", "handle_digest"])
def test_a_checkpoint_pruned_by_the_training_run_while_it_is_read_is_no_error(tmp_path, monkeypatch, hook):
    # export or sample --model RUN while the run trains with --keep-checkpoints 1: the file being read is deleted
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 200), {"step": 200})
    _training_prunes_when(monkeypatch, tmp_path, hook)
    state, path = ckpt.load_latest(tmp_path)
    # pruned before it was opened: the newer one; pruned while open: the file verified and read as it was
    expected = 300 if hook == "list_checkpoints" else 200
    assert state["step"] == expected and path == ckpt.checkpoint_path(tmp_path, expected)
