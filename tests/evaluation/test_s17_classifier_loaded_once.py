"""The bundled Fashion-MNIST classifier is loaded once per evaluate command (feature network and every stream's
class-consistency tally share it), not once per measured stream, with the same figures as a freshly loaded one."""

import json
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.cli.evaluate_class import ClassifierTally
from nextscale.evaluation import classifier

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture
def loads(monkeypatch):
    """Counts the calls of ``load_bundled_classifier`` (each returns a freshly loaded classifier, as before)."""
    calls = []
    load = classifier.load_bundled_classifier

    def counting(*args, **kwargs):
        calls.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(classifier, "load_bundled_classifier", counting)
    return calls


def fake_batches(pipe, num, batch_size, seed=0, cfg=1.0, **sampling):
    """Stands in for sampling (seconds on this CPU): ``num`` gray 32 px images of ``cfg``, labels 0, 1, 2, ..."""
    images = torch.rand(num, 1, 32, 32, generator=torch.Generator().manual_seed(int(10 * cfg))).mul(2).sub(1)
    yield images, torch.arange(num) % 10


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_a_cfg_sweep_and_a_samples_run_each_load_the_classifier_once(model_dir, tmp_path, loads, monkeypatch):
    from nextscale.evaluation import generate

    monkeypatch.setattr(generate, "generate_batches", fake_batches)
    samples, report_path = tmp_path / "samples", tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model_dir), "--reference", f"fashion-mnist:{ASSETS}", "--num", "4"]
    argv += ["--cfg", "1", "2", "--features", "classifier"]
    assert main([*argv, "--save-samples", str(samples), "--out", str(report_path)]) == 0
    assert len(loads) == 1  # was 3: the feature network, then one tally per cfg

    for row in json.loads(report_path.read_text())["results"]:  # the shared classifier judges as a fresh one does
        tally = ClassifierTally(_fresh())
        tally(*next(fake_batches(None, 4, 4, cfg=row["cfg"])))
        assert row["class_consistency"] == tally.metrics(10)["class_consistency"]
        assert row["classifier_inception_score"] == tally.metrics(10)["classifier_inception_score"]

    loads.clear()
    argv = ["evaluate", "--samples", str(samples / "cfg-1"), "--reference", f"fashion-mnist:{ASSETS}"]
    assert main([*argv, "--features", "classifier"]) == 0
    assert len(loads) == 1  # was 2: the feature network and the tally


def _fresh():
    from nextscale.pretrained import load_component

    return load_component(classifier.FashionClassifier, classifier.bundled_classifier_dir())


def test_adherence_tally_loads_its_default_judge_once(monkeypatch):
    from nextscale.evaluation.adherence import AdherenceTally

    class Judge:
        @staticmethod
        def logits(quadrants):  # (b, 1|3, 32, 32) -> (b, 10): every quadrant is class 0
            return torch.nn.functional.one_hot(torch.zeros(len(quadrants), dtype=torch.long), 10).float()

    calls = []
    monkeypatch.setattr(classifier, "load_bundled_classifier", lambda *args: calls.append(args) or Judge())
    tally = AdherenceTally([(0, 0, 0, 0)] * 4)
    for start in (0, 2):  # two batches of bright scenes: every quadrant named and judged
        tally(torch.ones(2, 1, 64, 64), torch.arange(start, start + 2))
    assert len(calls) == 1  # was one load per batch
    assert tally.report.overall.scene_accuracy == 1.0
