"""`evaluate --inception-classifier FILE`: the Inception Score beside FID, from the output layer in a local file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nextscale.cli import evaluate, main
from nextscale.evaluation.inception import inception_score

FASHION_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"
FEATURE_DIM, NUM_CLASSES = 2048, 1008


class PoolFeatures:
    """A stand-in for the FID Inception: 2048 fixed random projections of the pixels, after a ReLU."""

    def __init__(self) -> None:
        self.projection = torch.randn(3 * 16 * 16, FEATURE_DIM, generator=torch.Generator().manual_seed(0))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.interpolate(images.float(), size=(16, 16), mode="area")
        return torch.relu(small.flatten(1) @ self.projection)


@pytest.fixture
def pool_features(monkeypatch):
    extractor = PoolFeatures()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda *args, **kwargs: (extractor, "pool-features"))
    return extractor


def write_samples(path: Path, count: int = 30) -> torch.Tensor:
    from nextscale.data.sample_sets import NpzImageWriter

    images = torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with NpzImageWriter(path, count, 32) as archive:
        archive.add(images, [0] * count)
    return images


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_samples_reports_the_inception_score_of_the_samples(tmp_path, pool_features, capsys):
    write_samples(tmp_path / "samples.npz")
    weight = torch.randn(NUM_CLASSES, FEATURE_DIM, generator=torch.Generator().manual_seed(1)) * 0.01
    torch.save({"fc.weight": weight, "fc.bias": torch.zeros(NUM_CLASSES)}, tmp_path / "pt_inception.pth")
    argv = ["evaluate", "--samples", str(tmp_path / "samples.npz"), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    argv += ["--inception-classifier", str(tmp_path / "pt_inception.pth"), "--out", str(tmp_path / "report.json")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    # the features the command saw: the samples as written (8-bit), read back
    from nextscale.data.sample_sets import SampleSet

    images = torch.cat([batch for batch, _ in SampleSet(tmp_path / "samples.npz").batches(30)])
    logits = pool_features(images).double() @ weight.double().T
    expected = inception_score(logits[torch.from_numpy(np.random.RandomState(2020).permutation(30))], splits=1)[0]
    assert report["inception_score"] == pytest.approx(expected, rel=1e-6)
    assert report["inception_score_splits"] == 1 and report["inception_score_std"] == 0  # 30 images: one chunk
    assert any("Inception Score of 30 images is biased low" in line for line in report["warnings"])
    assert 1.0 < report["inception_score"] < NUM_CLASSES
    assert np.isfinite(report["fid"])  # FID and friends are still there


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--features", "classifier"],
            "--inception-classifier scores Inception features; it does not apply to --features",
        ),
        (["--inception-classifier", "missing.pth"], "not found (--inception-classifier)"),
    ],
)
def test_misplaced_or_missing_layers_are_refused_before_any_work(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    write_samples(tmp_path / "samples.npz", count=8)
    torch.save({"fc.weight": torch.zeros(NUM_CLASSES, FEATURE_DIM)}, tmp_path / "layer.pth")
    argv = ["evaluate", "--samples", "samples.npz", "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    if "--inception-classifier" not in extra:
        argv += ["--inception-classifier", "layer.pth"]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_a_cfg_sweep_of_a_class_model_scores_every_row(tiny_pipeline_dir, tmp_path, pool_features, capsys):
    torch.save({"fc.weight": torch.randn(NUM_CLASSES, FEATURE_DIM) * 0.01}, tmp_path / "layer.pth")
    argv = ["evaluate", "--model", str(tiny_pipeline_dir), "--num", "20", "--cfg", "1", "3", "--batch-size", "10"]
    argv += ["--reference", f"fashion-mnist:{FASHION_ASSETS}", "--inception-classifier", str(tmp_path / "layer.pth")]
    assert main([*argv, "--out", str(tmp_path / "sweep.json")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())["results"]
    assert [row["cfg"] for row in rows] == [1.0, 3.0]
    assert all(row["inception_score"] > 1.0 for row in rows)
    assert "Inception IS" in capsys.readouterr().out


def test_a_text_model_without_a_reference_refuses_the_layer(tmp_path, capsys):
    torch.save({"fc.weight": torch.zeros(NUM_CLASSES, FEATURE_DIM)}, tmp_path / "layer.pth")
    argv = ["evaluate", "--model", "bundled:scenes", "--inception-classifier", str(tmp_path / "layer.pth")]
    assert main(argv) == 2
    assert (
        "--inception-classifier scores samples beside FID; give --reference captions:PATH too"
        in capsys.readouterr().err
    )
