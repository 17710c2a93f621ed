"""A random tiny tokenizer and its token shards of the 16 px Fashion-MNIST test assets (train and held-out)."""

import dataclasses
from pathlib import Path

import pytest
import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every scaling test runs on one intra-op thread (see the root conftest's ``one_thread``)."""


@pytest.fixture(scope="session")
def token_data(tmp_path_factory):
    """(tokenizer folder, train tokens, held-out tokens): 200 and 100 sequences of 21 tokens, scales (1, 2, 4)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_shards import write_manifest, write_token_shards
    from nextscale.presets import tiny
    from nextscale.pretrained import save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    root = tmp_path_factory.mktemp("scaling-data")
    torch.manual_seed(0)
    config, _ = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(config, in_channels=1)).eval()
    save_component(tokenizer, root / "tokenizer")
    folders = {}
    for split in ("train", "test"):
        dataset = FashionMNIST(ASSETS, split, 16, 1)
        folders[split] = root / f"tokens-{split}"
        write_token_shards(tokenizer, dataset, folders[split], batch_size=100)
        write_manifest(tokenizer, len(dataset), folders[split], 50_000, source=f"assets:{split}")
    return root / "tokenizer", folders["train"], folders["test"]
