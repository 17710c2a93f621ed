"""Each metric against an independent brute-force computation of its published definition, and the evaluate report
against what a reproducible, comparable number needs (N, network, seed, batch size; a cache that cannot be reused
for other settings)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist

from nextscale.cli import evaluate, main
from nextscale.cli.evaluate_class import ClassifierTally
from nextscale.evaluation.fid import FeatureStats, frechet_distance
from nextscale.evaluation.generate import reconstruct_batches
from nextscale.evaluation.inception import inception_score
from nextscale.evaluation.precision_recall import precision_recall

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


# ------------------------------------------------------------------------------------------------ definitions
def _inception_score_by_definition(logits: np.ndarray, splits: int) -> float:
    """Salimans et al.'s code (and torch-fidelity's): chunk i is rows i N / splits .. (i + 1) N / splits."""
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    count, scores = len(probs), []
    for index in range(splits):
        part = probs[index * count // splits : (index + 1) * count // splits]
        kl = part * (np.log(part) - np.log(part.mean(axis=0, keepdims=True)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores))


@pytest.mark.parametrize("count", [100, 105, 999])
def test_inception_score_uses_the_reference_split_boundaries(count):
    logits = np.random.default_rng(count).normal(size=(count, 10)) * 3
    mean, _ = inception_score(torch.from_numpy(logits), splits=10)
    assert mean == pytest.approx(_inception_score_by_definition(logits, 10), rel=1e-12)


def _precision_recall_by_definition(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.: radius = distance to the k-th nearest other point; a ball includes its boundary."""

    def radii(points):
        return np.sort(cdist(points, points), axis=1)[:, k]  # column 0 is the point itself

    precision = (cdist(fake, real) <= radii(real)[None]).any(axis=1).mean()
    recall = (cdist(real, fake) <= radii(fake)[None]).any(axis=1).mean()
    return float(precision), float(recall)


def test_precision_recall_matches_the_definition_with_ties_and_any_chunking():
    rng = np.random.default_rng(0)
    for trial in range(12):
        real = rng.normal(size=(int(rng.integers(5, 120)), int(rng.integers(1, 20))))
        fake = rng.normal(size=(int(rng.integers(5, 120)), real.shape[1])) * 1.3 + 0.4
        if trial % 2:  # integer points: many distances tie exactly with a radius
            real, fake = np.round(real * 2), np.round(fake * 2)
        got = precision_recall(real, fake, chunk_size=int(rng.integers(1, 50)))
        assert tuple(got) == pytest.approx(_precision_recall_by_definition(real, fake), abs=0), trial


@pytest.mark.parametrize(("count", "dim"), [(300, 16), (40, 64)])  # the second: fewer samples than dimensions
def test_frechet_distance_matches_the_symmetric_eigenvalue_form(count, dim):
    rng = np.random.default_rng(dim)
    a = FeatureStats.from_features(rng.normal(size=(count, dim)))
    b = FeatureStats.from_features(rng.normal(size=(count, dim)) * 1.2 + 0.1)
    # tr((S1 S2)^1/2) = sum of the square roots of the eigenvalues of S1^1/2 S2 S1^1/2 (symmetric, PSD)
    values, vectors = np.linalg.eigh(a.cov)
    root = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    trace_root = np.sqrt(np.linalg.eigvalsh(root @ b.cov @ root).clip(min=0)).sum()
    diff = a.mean - b.mean
    expected = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_root
    assert frechet_distance(a.mean, a.cov, b.mean, b.cov) == pytest.approx(expected, rel=1e-7)


# ------------------------------------------------------------------------------------------------ class metrics
class _Judge(torch.nn.Module):
    """Predicts the class c written as c / 10 in pixel [0, 0, 0] of each image (a value in [-1, 1] that the tally's
    8-bit rounding keeps apart from its neighbours)."""

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(images[:, 0, 0, 0].mul(10).round().long(), 10).float() * 10


def test_per_class_consistency_keeps_each_class_at_its_index():
    tally = ClassifierTally(_Judge())
    labels = torch.tensor([0, 0, 2, 2, 4])  # no samples of classes 1, 3, 5..9
    predicted = torch.tensor([0, 1, 2, 2, 0])
    tally(predicted.float().div(10).view(-1, 1, 1, 1).expand(-1, 1, 4, 4), labels)
    per_class = tally.metrics(num_classes=10)["class_consistency_per_class"]
    assert per_class == [0.5, None, 1.0, None, 0.0, None, None, None, None, None]


class _IdentityTokenizer(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device to read

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return images


def test_reconstructions_spread_over_a_reference_listed_class_by_class():
    labels = torch.arange(5).repeat_interleave(20)  # 5 classes of 20, in class order like a folder
    dataset = torch.utils.data.TensorDataset(torch.zeros(100, 1, 4, 4), labels)
    batches = reconstruct_batches(_IdentityTokenizer(), dataset, 10, batch_size=4, progress=False)
    drawn = torch.cat([batch_labels for _, batch_labels in batches])
    assert torch.bincount(drawn, minlength=5).tolist() == [2, 2, 2, 2, 2]  # the first 10 would be class 0 only
    every = torch.cat([b for _, b in reconstruct_batches(_IdentityTokenizer(), dataset, 100, progress=False)])
    assert torch.equal(every, labels)


def test_reconstruct_batches_leaves_inference_mode_off_between_batches():
    # Held across the yield, inference mode stayed on in the caller's loop body.
    dataset = torch.utils.data.TensorDataset(torch.zeros(8, 1, 4, 4), torch.zeros(8, dtype=torch.long))
    for reconstructions, _ in reconstruct_batches(_IdentityTokenizer(), dataset, 8, batch_size=4, progress=False):
        assert not torch.is_inference_mode_enabled() and reconstructions.shape == (4, 1, 4, 4)


# ------------------------------------------------------------------------------------------------ the report
def _real_folder(root: Path, shade: int) -> Path:
    """Three class sub-folders of two 32 px gray images each."""
    for label in range(3):
        (root / f"class{label}").mkdir(parents=True)
        for index in range(2):
            value = (shade + 70 * label + 30 * index) % 256
            Image.new("L", (32, 32), value).save(root / f"class{label}" / f"{index}.png")
    return root


def test_baseline_against_a_folder_is_refused_as_not_held_out(model_dir, tmp_path, capsys):
    folder = _real_folder(tmp_path / "real", shade=0)
    argv = ["evaluate", "--model", str(model_dir), "--reference", str(folder), "--baseline", "--num", "6"]
    assert main([*argv, "--features", "classifier"]) == 2
    assert "--baseline compares the reference with real images held out from it" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_report_records_how_the_samples_were_drawn_and_warns_on_small_n(model_dir, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model_dir), "--num", "10", "--batch-size", "5", "--seed", "3"]
    argv += ["--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier", "--out", str(report_path)]
    assert main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["sampling"]["seed"] == 3 and report["sampling"]["batch_size"] == 5
    assert report["sampling"]["dtype"] == "fp32"
    assert report["feature_network"].startswith("bundled-fashion-classifier sha256:")
    assert report["reference_location"] == f"fashion-mnist:{ASSETS}"
    # 10 samples of 64-d features: singular covariance (the 100 reference images have enough), then the small-N
    # bias of every score and precision/recall's sets of unequal size
    assert len(report["warnings"]) == 3 and report["warnings"][0].startswith("10 sample images < 64 feature")
    assert "10 samples against 100 reference images: below 10,000" in report["warnings"][1]
    assert report["warnings"][2].startswith("precision/recall compare 10 samples with 100 reference images")
    assert (report["precision_recall_k"], report["kid_subsets"], report["kid_subset_size"]) == (3, 100, 10)
    assert "warning: 10 sample images" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_reference_cache_is_keyed_by_the_folder_it_read_not_by_its_spelling(model_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "reference.npz"
    argv = ["evaluate", "--model", str(model_dir), "--reference", "real", "--num", "6", "--features", "classifier"]
    argv += ["--seed", "0", "--reference-cache", str(cache)]
    for place, shade in (("first", 0), ("second", 128)):  # "real" names another folder of as many images
        _real_folder(tmp_path / place / "real", shade)
    monkeypatch.chdir(tmp_path / "first")
    assert main(argv) == 0 and cache.is_file()
    monkeypatch.chdir(tmp_path / "second")
    assert main(argv) == 2  # not the first folder's features, silently
    assert "pass another cache file or delete it" in capsys.readouterr().err


def test_network_name_tells_apart_two_files_of_one_name(tmp_path):
    for folder, content in (("a", b"one network"), ("b", b"another network")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "default_1.pt").write_bytes(content)
    first = evaluate.network_name("default_1.pt", tmp_path / "a" / "default_1.pt")
    second = evaluate.network_name("default_1.pt", tmp_path / "b" / "default_1.pt")
    assert first.startswith("default_1.pt sha256:") and first != second
