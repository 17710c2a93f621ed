"""A tiny random 10-class pipeline folder (16 px, scales 1-2-4) with class names, shared by the CLI tests."""

import pytest
import torch

from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    pipe = Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config), class_names=CLASS_NAMES)
    path = tmp_path_factory.mktemp("tiny") / "pipe"
    pipe.save_pretrained(path)
    return path
