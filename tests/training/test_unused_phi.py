"""A tokenizer with more Phi convolutions than its schedule uses trains under DDP: the unused ones are frozen."""

import dataclasses
import os
import socket

import torch
import torch.multiprocessing as mp
from training_helpers import read_metrics, tiny_configs, tiny_data, train_config

from nextscale import distributed
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TokenizerLossConfig, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer, freeze_unused_phis


def four_phis_on_three_scales() -> MultiScaleVQVAE:
    tokenizer_config, _ = tiny_configs(deterministic=True)
    return MultiScaleVQVAE(dataclasses.replace(tokenizer_config, num_phi=4))  # scales 1-2-4 use Phis 0, 2, 3


def test_the_phi_no_scale_uses_is_frozen_and_kept():
    tokenizer = four_phis_on_three_scales()
    assert tokenizer.quantizer.phi_index == (0, 2, 3)
    assert freeze_unused_phis(tokenizer) == [1]
    assert not any(p.requires_grad for p in tokenizer.quantizer.phis[1].parameters())
    assert all(p.requires_grad for i in (0, 2, 3) for p in tokenizer.quantizer.phis[i].parameters())
    assert "quantizer.phis.1.conv.weight" in tokenizer.state_dict()  # the weights keep their layout


def _train(root: str) -> None:
    dist_info = distributed.init_distributed()
    seed_everything(0)
    config = train_config(total_steps=3, eval_every=None)
    TokenizerTrainer(
        four_phis_on_three_scales(), TokenizerLossConfig(), config, root, *tiny_data(), dist_info=dist_info
    ).fit()


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group():
        _train(root)


def test_two_processes_train_past_the_second_step(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path / "ddp")), nprocs=2, join=True)  # DDP stopped at step 2 before
    assert [record["step"] for record in read_metrics(tmp_path / "ddp")] == [1, 2, 3]
