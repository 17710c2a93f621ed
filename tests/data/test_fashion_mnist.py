from pathlib import Path

import numpy as np
import pytest
import torch

from nextscale.data.fashion_mnist import (
    CLASS_NAMES,
    ENV_VAR,
    FashionMNIST,
    load_fashion_mnist,
    prepare_images,
    read_idx,
    write_idx,
)

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.mark.parametrize("name", ["array.idx", "array.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) * 7 % 251).astype(dtype).reshape(2, 3, 5)
    write_idx(tmp_path / name, array)
    loaded = read_idx(tmp_path / name)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "images.idx"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"images.idx is truncated"):
        read_idx(path)


def test_idx_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "images.idx.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (8, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError, match="broken gzip"):
        read_idx(path)


def test_missing_files_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as error:
        load_fashion_mnist(tmp_path, "train")
    assert "--data fashion-mnist:DIR" in str(error.value)  # --data DIR alone would be read as an image folder


def test_env_var_sets_default_root(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(ASSET_DIR))
    images, labels = load_fashion_mnist(split="test")
    assert images.shape == (100, 28, 28) and labels.shape == (100,)


def test_asset_subset_is_balanced():
    images, labels = load_fashion_mnist(ASSET_DIR, "train")
    assert images.dtype == np.uint8 and images.shape == (200, 28, 28)
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    assert len(CLASS_NAMES) == 10


def test_size_32_pads_losslessly():
    images, _ = load_fashion_mnist(ASSET_DIR, "test")
    padded = prepare_images(images[:3], size=32)
    assert padded.shape == (3, 1, 32, 32)
    assert torch.all(padded[:, :, :2] == -1) and torch.all(padded[:, :, :, -2:] == -1)
    restored = padded[:, 0, 2:30, 2:30].add(1).mul(127.5).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(restored, images[:3])


def test_dataset_items_and_channels():
    dataset = FashionMNIST(ASSET_DIR, split="test", size=16, channels=3)
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert torch.equal(image[0], image[2])
    assert isinstance(label, int) and label == int(dataset.labels[0])
    images, labels = dataset.tensors()
    assert images.shape == (100, 3, 16, 16) and labels.dtype == torch.int64
    assert torch.equal(images[0], image)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        FashionMNIST(ASSET_DIR, split="val")
    with pytest.raises(ValueError, match="channels"):
        FashionMNIST(ASSET_DIR, channels=2)
