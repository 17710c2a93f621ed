from pathlib import Path

import pytest
import torch

from nextscale.data.fashion_mnist import FashionMNIST
from nextscale.evaluation.classifier import (
    FashionClassifier,
    FashionClassifierConfig,
    bundled_classifier_dir,
    class_consistency,
    load_bundled_classifier,
)
from nextscale.pretrained import load_component, save_component

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def _tiny() -> FashionClassifier:
    torch.manual_seed(0)
    return FashionClassifier(FashionClassifierConfig(widths=(4, 8), embed_dim=8)).eval()


def test_shapes_and_channel_handling():
    model = _tiny()
    gray = torch.rand(3, 1, 32, 32) * 2 - 1
    assert model(gray).shape == (3, 10) and model.features(gray).shape == (3, 8)
    assert torch.allclose(model(gray.expand(-1, 3, -1, -1)), model(gray), atol=1e-6)
    with pytest.raises(ValueError, match="pad 28x28"):
        model(torch.zeros(1, 1, 28, 28))


def test_save_load_is_bit_exact(tmp_path):
    model = _tiny()
    model.train()
    model(torch.rand(8, 1, 32, 32))  # move BatchNorm running statistics away from their init
    model.eval()
    save_component(model, tmp_path / "classifier")
    loaded = load_component(FashionClassifier, tmp_path / "classifier")
    assert loaded.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    assert torch.equal(loaded(images), model(images))


def test_class_consistency_counts_matches():
    model = _tiny()
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    predicted = model.predict(images)
    assert class_consistency(model, images, predicted) == 1.0
    assert class_consistency(model, images, (predicted + 1) % 10) == 0.0
    with pytest.raises(ValueError, match="one label per image"):
        class_consistency(model, images, [0])


def test_bundled_classifier_is_accurate_on_test_assets():
    assert (bundled_classifier_dir() / "model.safetensors").is_file(), "run scripts/train_classifier.py"
    classifier = load_bundled_classifier()
    images, labels = FashionMNIST(ASSET_DIR, split="test", size=32).tensors()
    assert class_consistency(classifier, images, labels) >= 0.8
