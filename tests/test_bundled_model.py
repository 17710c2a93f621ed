"""The bundled Fashion-MNIST pipeline: it ships within the size budget, loads, and draws the class it is asked for."""

from pathlib import Path

import pytest
import torch

from nextscale.cli.common import BUNDLED_MODEL
from nextscale.evaluation.classifier import class_consistency, load_bundled_classifier
from nextscale.sampling.pipeline import Pipeline

SIZE_BUDGET_BYTES = 25 * 2**20  # the limit for weights stored inside the package


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline.from_pretrained(BUNDLED_MODEL)


def test_bundled_weights_are_safetensors_within_budget():
    weights = sorted(Path(BUNDLED_MODEL).rglob("*.safetensors"))
    assert [path.parent.name for path in weights] == ["tokenizer", "transformer"]
    assert sum(path.stat().st_size for path in weights) <= SIZE_BUDGET_BYTES
    assert (Path(BUNDLED_MODEL) / "MODEL_CARD.md").is_file()


def test_bundled_pipeline_is_the_documented_model(pipe):
    assert pipe.image_size == 32 and pipe.num_classes == 10
    assert pipe.tokenizer.config.in_channels == 1
    assert pipe.transformer.config.depth == 4 and pipe.transformer.config.embed_dim == 256
    assert next(pipe.transformer.parameters()).dtype == torch.float32  # fp16 storage, fp32 compute


def test_bundled_samples_are_recognised_as_their_class(pipe):
    # cfg 3 is the demo's default; the model card reports 98 % consistency there (2,000 samples), so 2 per class
    # with at most 4 misses out of 20 leaves room for platform noise without hiding a broken model
    labels = [label for label in range(10) for _ in range(2)]
    images = pipe(class_labels=labels, seed=0, cfg=3.0, output_type="pt").images
    assert images.shape == (20, 1, 32, 32)
    consistency = class_consistency(load_bundled_classifier(), images * 2 - 1, labels)
    assert consistency >= 0.8, f"only {consistency:.0%} of bundled samples show their class"
