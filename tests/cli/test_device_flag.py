"""--device is checked for every command before any work: an unavailable GPU is one line, never a traceback."""

import pytest
import torch

from nextscale.cli import main

COMMANDS = [
    "train --tokenizer t --tokens k --run-dir r",
    "train-tokenizer --data fashion-mnist --run-dir r",
    "tokenize --tokenizer t --data d --out o",
    "demo --out-dir o",
    "sample --class 1",
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message a machine without CUDA gives")
@pytest.mark.parametrize("command", COMMANDS, ids=[command.split()[0] for command in COMMANDS])
def test_cuda_without_a_gpu_is_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command.split(), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--device cuda: CUDA is not available on this machine (use --device cpu)")
    assert len(err.splitlines()) == 1 and not list(tmp_path.iterdir())  # nothing made


@pytest.mark.parametrize("command", COMMANDS, ids=[command.split()[0] for command in COMMANDS])
def test_a_device_that_is_no_device_is_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*command.split(), "--device", "gpu"]) == 2
    assert "--device 'gpu' is not a torch device (e.g. cpu, cuda, cuda:1)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "device, message",
    [("mps", "Apple's MPS is not available on this machine"), ("meta", "nextscale runs on cpu, cuda or mps")],
)
def test_other_unusable_devices_are_one_line(device, message, tmp_path, capsys, monkeypatch):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    monkeypatch.chdir(tmp_path)
    assert main(["tokenize", "--tokenizer", "t", "--data", "d", "--out", "o", "--device", device]) == 2
    assert message in capsys.readouterr().err
