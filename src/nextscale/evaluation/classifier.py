"""A small CNN that classifies 32x32 Fashion-MNIST images, to score class-conditional samples.

``class_consistency`` asks it whether a sample generated for class c looks like class c; its 64-d embedding
(``features``) is also a cheap extractor for a Fréchet distance on Fashion-MNIST, where Inception's ImageNet
features say little. The bundled weights (``nextscale/assets/classifier/``) come from
``scripts/train_classifier.py``; their test accuracy is in the README beside them.

Architecture: three blocks of conv3x3 -> BatchNorm -> ReLU -> max-pool 2 (32 -> 16 -> 8 -> 4 pixels), then
flatten -> linear to the embedding -> ReLU -> dropout -> linear to the class logits.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from nextscale.pretrained import load_component


@dataclasses.dataclass(frozen=True)
class FashionClassifierConfig:
    image_size: int = 32  # input side; the flatten layer fixes it
    widths: tuple[int, ...] = (32, 64, 64)  # channels of the conv blocks, each halving the side
    embed_dim: int = 64  # penultimate features (the extractor output)
    num_classes: int = 10
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.image_size % (2 ** len(self.widths)) != 0:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^{len(self.widths)} (one halving per conv block)"
            )


class FashionClassifier(nn.Module):
    """Logits over the 10 Fashion-MNIST classes for images in [-1, 1] (1 or 3 channels; RGB is averaged to gray)."""

    config_class = FashionClassifierConfig

    def __init__(self, config: FashionClassifierConfig) -> None:
        super().__init__()
        self.config = config
        blocks, in_channels = [], 1
        for width in config.widths:
            blocks += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),  # BatchNorm supplies the bias
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        side = config.image_size // 2 ** len(config.widths)
        self.embed = nn.Linear(in_channels * side * side, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.embed_dim, config.num_classes)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[-2:] != (size, size):
            raise ValueError(
                f"FashionClassifier takes (B, 1|3, {size}, {size}) images in [-1, 1], got "
                f"{tuple(images.shape)}; pad 28x28 images to 32 (nextscale.data.fashion_mnist)"
            )
        if images.shape[1] == 3:
            images = images.mean(dim=1, keepdim=True)  # (B, 3, H, W) -> (B, 1, H, W)
        return images

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Embedding (B, embed_dim) of images (B, 1|3, H, W) in [-1, 1]."""
        hidden = self.blocks(self._check(images))  # (B, widths[-1], H / 8, W / 8)
        return torch.relu(self.embed(hidden.flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, 1|3, H, W) in [-1, 1]."""
        return self.head(self.dropout(self.features(images)))

    @torch.inference_mode()
    def logits(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Class logits (B, num_classes) float32 on the CPU, computed in batches (call ``eval()`` first)."""
        device = next(self.parameters()).device
        return torch.cat([self(chunk.to(device)).float().cpu() for chunk in torch.split(images, batch_size)])

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted class ids (B,) int64, computed in batches (call ``eval()`` first when training)."""
        return self.logits(images, batch_size).argmax(dim=1)


def bundled_classifier_dir() -> Path:
    """Folder of the classifier weights shipped with the package (config.json + model.safetensors)."""
    return Path(str(resources.files("nextscale").joinpath("assets", "classifier")))


def load_bundled_classifier(device: str | torch.device = "cpu") -> FashionClassifier:
    """The Fashion-MNIST classifier shipped with the package, in eval mode."""
    folder = bundled_classifier_dir()
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no bundled classifier in {folder}; train one with `python scripts/train_classifier.py`"
        )
    return load_component(FashionClassifier, folder, device=device)


def class_consistency(
    classifier: FashionClassifier, images: torch.Tensor, labels: torch.Tensor | list[int], batch_size: int = 512
) -> float:
    """Share of images the classifier assigns to the label they were generated for.

    Args:
        classifier: a ``FashionClassifier`` (put in eval mode here).
        images: (B, 1|3, 32, 32) in [-1, 1].
        labels: (B,) conditioning class ids.

    Returns:
        accuracy in [0, 1].
    """
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"need one label per image: {images.shape[0]} images, labels of shape {tuple(labels.shape)}")
    if images.shape[0] == 0:
        raise ValueError("class_consistency needs at least one image")
    classifier.eval()
    predictions = classifier.predict(images, batch_size=batch_size)
    return float((predictions == labels).double().mean())
