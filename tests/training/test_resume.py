"""Resume: a run interrupted and re-run continues at the same step and data position with the same losses."""

import pytest
import torch
from training_helpers import read_metrics, tiny_configs, train_config

from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.checkpoint import latest_checkpoint
from nextscale.training.config import TokenizerLossConfig, TransformerObjective, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _transformer_trainer(run_dir, data, **overrides):
    tokenizer_config, transformer_config = tiny_configs()  # dropout and drop-path on: the RNG must resume too
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(**{"total_steps": 6, "grad_accum": 2, "ema_decay": 0.5, **overrides})
    return TransformerTrainer(transformer, tokenizer, objective, config, run_dir, *data)


def test_transformer_resume_matches_uninterrupted_run(tmp_path, data):
    straight = _transformer_trainer(tmp_path / "straight", data)
    straight.fit()
    interrupted = _transformer_trainer(tmp_path / "resumed", data)
    interrupted.fit(max_steps=3)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000003.pt"
    resumed = _transformer_trainer(tmp_path / "resumed", data)
    assert resumed.step == 3
    assert resumed.sampler.state_dict()["step"] == 3 * 2  # 3 optimizer steps of 2 micro-batches consumed
    resumed.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight")]
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == losses
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight.raw_model.state_dict().values(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)


def test_tokenizer_resume_with_discriminator(tmp_path, data):
    def make(run_dir):
        seed_everything(0)
        tokenizer = MultiScaleVQVAE(tiny_configs()[0])
        losses = TokenizerLossConfig(disc_start=2, disc_channels=32, disc_layers=2)
        return TokenizerTrainer(tokenizer, losses, train_config(total_steps=5, betas=(0.5, 0.9)), run_dir, *data)

    straight = make(tmp_path / "straight")
    straight.fit()
    make(tmp_path / "resumed").fit(max_steps=3)
    resumed = make(tmp_path / "resumed")
    resumed.fit()
    expected = read_metrics(tmp_path / "straight")
    got = read_metrics(tmp_path / "resumed")
    assert [r["loss"] for r in got] == [r["loss"] for r in expected]
    assert [r["disc_loss"] for r in got[2:]] == [r["disc_loss"] for r in expected[2:]]
    assert torch.equal(straight.raw_model.quantizer.code_usage_ema, resumed.raw_model.quantizer.code_usage_ema)


def test_run_dir_of_another_config_is_refused(tmp_path, data):
    _transformer_trainer(tmp_path, data).fit(max_steps=1)
    with pytest.raises(ValueError, match=r"different config \(train.lr: 0.002 in the run, 0.001 now"):
        _transformer_trainer(tmp_path, data, lr=1e-3)
    # cadences may change between invocations
    assert _transformer_trainer(tmp_path, data, log_every=5, checkpoint_every=2).step == 1


def test_worker_processes_give_the_same_batches(tmp_path, data):
    losses = {}
    for workers in (0, 1):
        trainer = _transformer_trainer(tmp_path / f"workers{workers}", data, total_steps=3, num_workers=workers)
        trainer.fit()
        losses[workers] = [r["loss"] for r in read_metrics(tmp_path / f"workers{workers}")]
    assert losses[0] == losses[1]
