"""`nextscale evaluate` streams samples: each generated batch goes to the feature network and is dropped, so the
images held at once are bounded by the batch size, not by --num."""

import gc
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from nextscale.cli import main
from nextscale.evaluation.features import stream_features

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


class LiveImages:
    """Wraps a batch generator and records the most images alive at once (weak references: no keeping)."""

    def __init__(self) -> None:
        self.alive: weakref.WeakSet = weakref.WeakSet()
        self.peak = 0
        self.batches = 0

    def track(self, batches):
        for images, labels in batches:
            gc.collect()
            self.alive.add(images)
            self.peak = max(self.peak, sum(t.shape[0] for t in self.alive))
            self.batches += 1
            yield images, labels
            del images, labels


class CountingExtractor:
    """Mean pixel per channel as features; counts the images of every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(images.shape[0])
        return images.mean(dim=(2, 3))  # (b, 3)


def test_stream_features_holds_one_batch_and_shows_it_to_observers():
    def generate(count, batch_size):
        for start in range(0, count, batch_size):
            size = min(batch_size, count - start)
            yield torch.rand(size, 1, 8, 8) * 2 - 1, torch.arange(start, start + size)

    live, extractor, seen = LiveImages(), CountingExtractor(), []
    features = stream_features(
        extractor, live.track(generate(100, 16)), feature_batch=5, observers=[lambda x, y: seen.append(y)]
    )
    assert features.shape == (100, 3) and features.dtype == np.float64
    assert live.batches == 7 and live.peak <= 16  # never more than the batch being measured
    assert max(extractor.calls) == 5 and sum(extractor.calls) == 100
    assert torch.cat(seen).tolist() == list(range(100))  # every label, in order, once
    with pytest.raises(ValueError, match="no images"):
        stream_features(extractor, iter(()))


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_keeps_only_one_batch_of_images(model_dir, tmp_path, monkeypatch):
    from nextscale.evaluation import generate

    live, real_generate = LiveImages(), generate.generate_batches
    monkeypatch.setattr(generate, "generate_batches", lambda *a, **k: live.track(real_generate(*a, **k)))
    report_path, samples = tmp_path / "report.json", tmp_path / "samples"
    argv = ["evaluate", "--model", str(model_dir), "--num", "40", "--batch-size", "8", "--reference"]
    argv += [f"fashion-mnist:{ASSETS}", "--features", "classifier", "--seed", "0", "--baseline"]
    assert main([*argv, "--save-samples", str(samples), "--out", str(report_path)]) == 0
    assert live.batches == 5 and live.peak <= 8
    report = json.loads(report_path.read_text())
    assert report["num_samples"] == 40 and report["fid"] > 0
    assert report["kid"] > report["kid_real_baseline"] and report["kid_std"] >= 0
    assert len(report["class_consistency_per_class"]) == 10 and 0 <= report["class_consistency"] <= 1
    names = sorted(path.name for path in samples.iterdir())
    assert len(names) == 40 and names[0] == "000000_class0.png" and names[-1] == "000039_class9.png"
