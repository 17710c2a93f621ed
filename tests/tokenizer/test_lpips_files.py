"""LPIPS files that are not what they claim are one ValueError naming the file, never torch's reader error."""

import pytest
import torch
from torch import nn

from nextscale.tokenizer.losses import LPIPS


class _Features(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def test_a_file_that_is_not_torchscript_is_named(tmp_path):
    path = tmp_path / "backbone.pth"
    path.write_bytes(b"\x80\x05not a TorchScript archive")
    message = r"backbone.pth is not a TorchScript feature extractor \(PytorchStreamReader failed [^)]*\); pass a"
    with pytest.raises(ValueError, match=message):
        LPIPS.from_files(path)


def test_backbone_or_heads_that_are_not_safetensors_are_named(tmp_path):
    garbage = tmp_path / "vgg.safetensors"
    garbage.write_bytes(b"\x80\x05a pickle, not safetensors")
    with pytest.raises(ValueError, match=r"LPIPS backbone .*vgg.safetensors is not a readable .safetensors file"):
        LPIPS.from_files(garbage)
    backbone = tmp_path / "features.pt"
    torch.jit.save(torch.jit.script(_Features()), str(backbone))
    assert LPIPS.from_files(backbone).head_weights is None  # a good backbone loads
    with pytest.raises(ValueError, match=r"LPIPS heads .*vgg.safetensors is not a readable .safetensors file"):
        LPIPS.from_files(backbone, garbage)
    with pytest.raises(FileNotFoundError, match=r"LPIPS heads .*none.safetensors not found"):
        LPIPS.from_files(backbone, tmp_path / "none.safetensors")
