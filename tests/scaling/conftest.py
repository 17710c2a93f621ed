"""A random tiny tokenizer and its token shards of the 16 px Fashion-MNIST test assets (train and held-out)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from tiny_sweep import SWEEP_SETTINGS, TRAIN_FLAGS

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every scaling test runs on one intra-op thread (see the root conftest's ``one_thread``)."""


@pytest.fixture(scope="session")
def token_data(tmp_path_factory):
    """(tokenizer folder, train tokens, held-out tokens): 200 and 100 sequences of 21 tokens, scales (1, 2, 4)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_manifest import write_manifest
    from nextscale.data.token_shards import write_token_shards
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


@pytest.fixture(scope="session")
def sweep_argv(token_data):
    """A function: the `nextscale scaling run` argv of a tiny sweep into OUT (width base 16, batch 8, 3 steps,
    an evaluation every step, the tiny preset), with other ``settings`` or ``train_flags`` (after `--`) if given."""
    tokenizer, tokens, eval_tokens = token_data

    def build(out, depths, settings=SWEEP_SETTINGS, train_flags=TRAIN_FLAGS) -> list[str]:
        argv = ["scaling", "run", "--out", str(out), "--depths", *map(str, depths), "--tokens", str(tokens)]
        argv += ["--eval-tokens", str(eval_tokens), "--tokenizer", str(tokenizer), *settings]
        return [*argv, "--", *train_flags]

    return build


@pytest.fixture(scope="session")
def finished_sweep(sweep_argv, tmp_path_factory):
    """A finished sweep of depths 1 and 2 (``sweep_argv``'s settings); copy it before changing it."""
    from nextscale.cli import main

    out = tmp_path_factory.mktemp("finished-sweep") / "sweep"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the `one_thread` fixture, which a session fixture cannot use
    try:
        assert main(sweep_argv(out, [1, 2])) == 0
    finally:
        torch.set_num_threads(previous)
    return out
