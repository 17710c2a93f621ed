"""The logged learning rate is the model's, not that of a second optimizer (a tokenizer's discriminator)."""

import pytest
from training_helpers import read_metrics, tiny_configs, tiny_data, train_config

from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TokenizerLossConfig, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer


def test_a_discriminator_with_its_own_lr_does_not_change_the_logged_lr(tmp_path):
    seed_everything(0)
    tokenizer_config, _ = tiny_configs()
    losses = TokenizerLossConfig(disc_start=1, disc_channels=16, disc_layers=1, disc_lr=0.5)
    config = train_config(total_steps=2, eval_every=None, lr_schedule="constant")
    TokenizerTrainer(MultiScaleVQVAE(tokenizer_config), losses, config, tmp_path, *tiny_data()).fit()
    logged = [record["lr"] for record in read_metrics(tmp_path)]
    assert logged[-1] == pytest.approx(config.peak_lr)  # the tokenizer's lr after warm-up; the discriminator's is 0.5
