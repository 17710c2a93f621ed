"""`evaluate --inception-classifier FILE` reads its file once, though the command checks it before sampling and
uses it after; a rewritten file is read again, even within one tick of the file clock."""

from pathlib import Path

import pytest
import torch

from nextscale.cli import evaluate
from nextscale.evaluation import inception_classifier

FASHION_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"
FEATURE_DIM, NUM_CLASSES = 2048, 1008


@pytest.fixture
def reads(monkeypatch):
    """The files ``load_inception_classifier`` reads tensors from, one entry per read."""
    seen: list[Path] = []
    read = inception_classifier._read_tensors

    def counting(path):
        seen.append(path)
        return read(path)

    monkeypatch.setattr(inception_classifier, "_read_tensors", counting)
    return seen


def test_evaluate_checks_and_scores_with_one_read(tmp_path, reads):
    """The command's two uses, in its order: ``check_flags`` (before any sampling) and ``inception_head``."""
    from nextscale.cli import build_parser, evaluate_scores

    torch.save({"fc.weight": torch.randn(NUM_CLASSES, FEATURE_DIM) * 0.01}, tmp_path / "layer_once.pth")
    argv = ["evaluate", "--samples", str(tmp_path / "samples.npz"), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    args = build_parser().parse_args([*argv, "--inception-classifier", str(tmp_path / "layer_once.pth")])
    evaluate.check_flags(args)
    head = evaluate_scores.inception_head(args, lambda images: images)
    assert head.weight.shape == (NUM_CLASSES, FEATURE_DIM)
    assert reads == [tmp_path / "layer_once.pth"]


def test_a_rewritten_file_is_read_again(tmp_path, reads):
    path = tmp_path / "layer_rewritten.pth"
    torch.save({"fc.weight": torch.zeros(NUM_CLASSES, FEATURE_DIM)}, path)
    first = inception_classifier.load_inception_classifier(path)
    assert inception_classifier.load_inception_classifier(path) is first and len(reads) == 1
    torch.save({"fc.weight": torch.ones(NUM_CLASSES, FEATURE_DIM)}, path)  # same size, maybe the same time stamp
    again = inception_classifier.load_inception_classifier(path)
    assert len(reads) == 2 and torch.equal(again.weight, torch.ones(NUM_CLASSES, FEATURE_DIM, dtype=torch.float64))
