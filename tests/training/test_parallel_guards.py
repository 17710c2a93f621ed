"""Distributed runs that used to go wrong silently or hang: refused in words before any work, or kept in step.

- ``--strategy none`` with several processes (each would train its own model) and FSDP previews of sharded raw
  weights are refused before the run directory is touched;
- FSDP's held-out evaluation runs as many forwards on every rank, also when the shares of the held-out set
  need different numbers of micro-batches, and averages exactly the samples one process would;
- every rank resumes from rank 0's checkpoint, and a rank that sees another file says so on every rank.
"""

import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp
from training_helpers import tiny_configs, tiny_data, train_config

from nextscale import distributed
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TokenizerLossConfig, TrainConfig, TransformerObjective, seed_everything
from nextscale.training.options import add_run_arguments
from nextscale.training.parallel_guards import check_parallelism
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer

TWO_RANKS = distributed.DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))


def _transformer_trainer(run_dir, config: TrainConfig, dist_info=None) -> TransformerTrainer:
    tokenizer_config, transformer_config = tiny_configs(deterministic=True)
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    return TransformerTrainer(transformer, tokenizer, objective, config, run_dir, *tiny_data(), dist_info=dist_info)


def test_strategy_none_with_several_processes_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"--strategy none is for one process, and this run has 2: use --strategy ddp"):
        _transformer_trainer(tmp_path / "run", train_config(strategy="none"), TWO_RANKS)
    assert not (tmp_path / "run").exists()
    check_parallelism(train_config(strategy="none"), 1)  # one process: nothing to sync
    check_parallelism(train_config(strategy="ddp"), 2)


def test_fsdp_previews_of_sharded_raw_weights_are_refused_before_any_work(tmp_path):
    config = train_config(strategy="fsdp", ema_decay=None, preview_every=100)
    with pytest.raises(
        ValueError, match=r"--strategy fsdp keeps the raw weights sharded.*--ema-decay.*--preview-every"
    ):
        _transformer_trainer(tmp_path / "run", config, TWO_RANKS)
    assert not (tmp_path / "run").exists()
    check_parallelism(train_config(strategy="fsdp", ema_decay=0.999, preview_every=100), 2)  # previews the EMA
    check_parallelism(train_config(strategy="fsdp", ema_decay=None, preview_every=None), 2)  # no previews
    check_parallelism(config, 1)  # one process: FSDP shards nothing


def test_strategy_help_says_none_is_for_one_process():
    import argparse

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, TrainConfig())
    help_text = next(action.help for action in parser._actions if "--strategy" in action.option_strings)
    assert "none (one process only" in help_text and "previews need --ema-decay" in help_text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join_group(rank: int, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)


# 9 held-out samples over 2 ranks in micro-batches of 4 (global batch 8): rank 0's share of 5 takes 2 forwards,
# rank 1's share of 4 takes 1. Under FSDP each forward gathers the weights, so rank 1 must run a second one.
EVAL_CONFIG = dict(batch_size=8, eval_samples=9)


def _fsdp_eval_worker(rank: int, port: int, root: str) -> None:
    _join_group(rank, port)
    # a short timeout: before the fix the ranks' collectives went out of step and waited for it to pass
    with distributed.process_group(device="cpu", timeout_s=30) as info:
        trainer = _transformer_trainer(f"{root}/fsdp", train_config(strategy="fsdp", **EVAL_CONFIG), info)
        assert trainer.micro_batch == 4
        metrics = trainer.run_evaluation()
        if rank == 0:
            torch.save(metrics, f"{root}/fsdp_metrics.pt")


@pytest.mark.slow  # FSDP2 set-up on gloo: a few seconds
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fsdp_evaluation_with_uneven_micro_batches_finishes_and_matches_one_process(tmp_path):
    mp.spawn(_fsdp_eval_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    sharded = torch.load(tmp_path / "fsdp_metrics.pt", weights_only=True)
    single = _transformer_trainer(tmp_path / "single", train_config(**EVAL_CONFIG)).run_evaluation()
    # the same weights (built from the same seed) and the same 9 samples, each counted once: only the float
    # rounding of other batch shapes differs (~1e-7); a repeat counted twice or a sample left out moves the mean
    # by about a ninth of a sample's spread
    assert set(sharded) == set(single) and "loss" in single
    for name, value in single.items():
        assert abs(sharded[name] - value) <= 1e-5 * max(1.0, abs(value)), (name, sharded[name], value)


def _tokenizer_trainer(run_dir, dist_info=None) -> TokenizerTrainer:
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tiny_configs()[0])
    config = train_config(total_steps=2, checkpoint_every=1)
    return TokenizerTrainer(tokenizer, TokenizerLossConfig(), config, run_dir, *tiny_data(), dist_info=dist_info)


def _resume_worker(rank: int, port: int, root: str) -> None:
    _join_group(rank, port)
    with distributed.process_group(device="cpu", timeout_s=60) as info:
        trainer = _tokenizer_trainer(f"{root}/shared", info)  # one folder for both: both resume at step 2
        assert trainer.step == 2
        expected = {"lagging": "does not exist here", "other-file": "here is another file"}
        for folder, reason in expected.items():
            # rank 1 sees its own folder, as on a node-local --run-dir
            run_dir = f"{root}/shared" if rank == 0 else f"{root}/{folder}"
            with pytest.raises(ValueError) as caught:
                _tokenizer_trainer(run_dir, info)
            message = str(caught.value)
            assert message.startswith("rank 1 cannot resume from step-00000002.pt, rank 0's newest checkpoint")
            assert reason in message and "every process must see the same --run-dir" in message, message


def test_ranks_that_see_different_checkpoints_stop_with_one_clear_error(tmp_path):
    _tokenizer_trainer(tmp_path / "shared").fit()  # checkpoints at steps 1 and 2
    newest = ckpt.checkpoint_path(tmp_path / "shared", 2)
    # "lagging": rank 1's listing lacks the newest checkpoint (it would have resumed at step 1)
    shutil.copytree(tmp_path / "shared", tmp_path / "lagging")
    for path in (
        ckpt.checkpoint_path(tmp_path / "lagging", 2),
        ckpt.record_path(ckpt.checkpoint_path(tmp_path / "lagging", 2)),
    ):
        path.unlink()
    # "other-file": rank 1's step-2 checkpoint has other weights (another node's own run)
    shutil.copytree(tmp_path / "shared", tmp_path / "other-file")
    state = ckpt.load_checkpoint(newest)
    weights = state["models"]["model"]
    name = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    weights[name] = weights[name] + 1.0
    ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path / "other-file", 2), state)
    mp.spawn(_resume_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)


@pytest.mark.parametrize("command", ["train", "train-tokenizer"])
def test_the_cli_refuses_strategy_none_under_torchrun_before_reading_data(tmp_path, monkeypatch, capsys, command):
    from nextscale.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the refusal comes before any process group
    data = ["--data", str(tmp_path / "no-such-data")]  # never read: the refusal comes first
    extra = ["--tokenizer", str(tmp_path / "no-tokenizer")] if command == "train" else []
    argv = [command, *data, *extra, "--run-dir", str(tmp_path / "run"), "--strategy", "none"]
    assert main(argv) == 2
    assert "--strategy none is for one process, and this run has 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
