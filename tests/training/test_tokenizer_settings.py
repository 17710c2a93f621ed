"""Tokenizer training settings that would do nothing, and what the run tells its user (collapse, previews)."""

import dataclasses
import logging

import pytest
import torch
from training_helpers import read_metrics, tiny_configs, train_config, train_tokenizer_error

from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import tokenizer_trainer
from nextscale.training.config import TokenizerLossConfig, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer


@pytest.mark.parametrize(
    ("file_args", "typed", "refused"),
    [
        ({}, "--disc-weight 0.8", "--disc-weight"),  # no --disc-start: no GAN, the weight would weigh nothing
        ({}, "--disc-start none --disc-lr 1e-4 --disc-layers 2", "--disc-lr, --disc-layers"),
        ({"disc-channels": 32}, "", "--disc-channels"),  # the run file contradicts itself
        ({}, "--dead-code-min-hits 3", "--dead-code-min-hits"),  # no restarts to use it
        ({"disc-start": 15, "disc-channels": 32}, "--disc-start none", None),  # the command line turns the file's off
        ({"dead-code-every": 50, "dead-code-min-hits": 0.5}, "--dead-code-every none", None),
        ({"disc-start": 15}, "--disc-weight 0.8 --dead-code-every 10 --dead-code-min-hits 2", None),
    ],
)
def test_options_of_a_switched_off_feature_are_refused(tmp_path, capsys, file_args, typed, refused):
    err, run_dir = train_tokenizer_error(tmp_path, capsys, file_args, typed)
    if refused:
        assert f"{refused} would be ignored" in err and "(the default): add --" in err, err
        assert not run_dir.exists()
    else:
        assert "would be ignored" not in err and "missing" in err, err


def test_a_discriminator_without_layers_is_refused_naming_the_flags(tmp_path, data):
    losses = TokenizerLossConfig(disc_start=0, disc_channels=32, disc_layers=0)
    with pytest.raises(ValueError, match=r"--disc-channels and --disc-layers must be >= 1, got 32 and 0"):
        TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=2), tmp_path, *data)


def test_a_discriminator_that_starts_after_the_last_step_is_warned_about(tmp_path, data, caplog):
    def build(disc_start, run_dir):
        losses = TokenizerLossConfig(disc_start=disc_start, disc_channels=32, disc_layers=2)
        model = MultiScaleVQVAE(tiny_configs()[0])
        return TokenizerTrainer(model, losses, train_config(total_steps=4), run_dir, *data)

    with caplog.at_level(logging.WARNING, logger="nextscale.training.tokenizer_trainer"):
        build(4, tmp_path / "late")
    assert "--disc-start 4 is not before the run's last step 4: the discriminator never trains" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nextscale.training.tokenizer_trainer"):
        build(3, tmp_path / "in-time")  # trains at step index 3, the run's fourth step
    assert "never trains" not in caplog.text


def test_codebook_collapse_is_warned_about_once_after_the_usage_has_settled(tmp_path, data, caplog):
    trainer = TokenizerTrainer(
        MultiScaleVQVAE(tiny_configs()[0]), TokenizerLossConfig(), train_config(total_steps=1), tmp_path, *data
    )
    quantizer = trainer.raw_model.quantizer
    collapsed = {"loss": 1.0, "code_usage/scale0": 1.0, "code_usage/scale1": 2.0, "code_usage/scale2": 3.1}
    with caplog.at_level(logging.WARNING, logger="nextscale.training.tokenizer_trainer"):
        trainer.log_metrics(collapsed, "train")  # the usage EMA still starts from zeros: too early to tell
        assert "collapse" not in caplog.text
        quantizer.usage_updates.fill_(100 * len(quantizer.sides))
        trainer.log_metrics({**collapsed, "code_usage/scale2": 55.0}, "train")  # healthy
        assert "collapse" not in caplog.text
        trainer.log_metrics(collapsed, "train")
        trainer.log_metrics(collapsed, "train")
    warnings = [r.getMessage() for r in caplog.records if "collapse" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"only 3.1% of the {quantizer.vocab_size} codes are in use at the finest scale" in warnings[0]
    assert "--dead-code-every" in warnings[0]


class _Numbered(torch.utils.data.Dataset):
    """16 gray 16 px images, image i filled with the value i / 16 (so a grid's images say which items they are)."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int):
        return torch.full((1, 16, 16), index / 16), 0


def test_previews_spread_over_the_held_out_set_and_say_where_they_are(tmp_path, data, monkeypatch, caplog):
    seed_everything(0)
    trainer = TokenizerTrainer(
        MultiScaleVQVAE(tiny_configs()[0]),
        TokenizerLossConfig(),
        train_config(total_steps=1),
        tmp_path,
        data[0],
        _Numbered(),
    )
    shown = {}
    save_grid = tokenizer_trainer.save_grid

    def recording_save_grid(images, *args, **kwargs):
        shown["images"] = images
        return save_grid(images, *args, **kwargs)

    monkeypatch.setattr(tokenizer_trainer, "save_grid", recording_save_grid)
    with caplog.at_level(logging.INFO, logger="nextscale.training.tokenizer_trainer"):
        trainer.preview(7)
    originals = shown["images"][:8, 0, 0, 0] * 16  # the top row
    assert originals.round().tolist() == [0, 2, 4, 6, 8, 10, 12, 14]  # not items 0..7, one class of a sorted folder
    path = tmp_path / "previews" / "step-00000007.png"
    assert path.is_file()
    assert f"step 7: originals (top) and reconstructions (bottom) in {path}" in caplog.text


def test_a_quantizer_loss_of_weight_zero_is_refused(tmp_path, data):
    # the straight-through reconstruction carries no gradient to the codebook and the Phi convs: they would stay random
    losses = TokenizerLossConfig(quant_weight=0.0)
    with pytest.raises(
        ValueError, match=r"--quant-weight must be > 0, got 0.0: the quantizer loss is the only gradient"
    ):
        TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=2), tmp_path, *data)


def test_tokenizer_loss_leaves_out_the_discriminator_term(tmp_path, data, capsys):
    seed_everything(0)
    losses = TokenizerLossConfig(disc_start=1, disc_channels=32, disc_layers=2)
    config = train_config(total_steps=3, progress=True)
    TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, config, tmp_path, *data).fit()
    assert "tokenizer_loss=" in capsys.readouterr().err  # the progress bar follows it, not the jumping "loss"
    first, *adversarial = read_metrics(tmp_path)
    assert first["tokenizer_loss"] == first["loss"] and "disc_loss" not in first  # before the GAN: the same sum
    for record in adversarial:  # "loss" adds the discriminator's hinge loss, which trains only the discriminator
        assert record["tokenizer_loss"] == pytest.approx(record["loss"] - record["disc_loss"], rel=1e-6)
        assert record["disc_loss"] > 0  # so the two differ


def test_previews_of_the_raw_weights_reconstruct_without_dropout(tmp_path, data, monkeypatch):
    config = dataclasses.replace(tiny_configs()[0], dropout=0.5)
    trainer = TokenizerTrainer(
        MultiScaleVQVAE(config), TokenizerLossConfig(), train_config(total_steps=1, ema_decay=None), tmp_path, *data
    )
    grids = []
    monkeypatch.setattr(tokenizer_trainer, "save_grid", lambda images, path, nrow: grids.append(images) or path)
    trainer.raw_model.train()  # as the loop leaves it after a step
    trainer.preview(1)
    trainer.preview(2)
    assert torch.equal(grids[0], grids[1])  # the same reconstructions: dropout off
    assert trainer.raw_model.training  # and training goes on in train mode


def test_loss_flags_show_their_defaults_in_help():
    import argparse

    from nextscale.cli.train_tokenizer import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "adaptive adversarial weight (default: 0.5)" in text and "quantizer loss weight (default: 1.0)" in text
    assert "PatchGAN stride-2 layers (default: 3)" in text and "below which a code is dead (default: 0.01)" in text


def test_a_perceptual_term_of_weight_zero_is_logged_without_a_backward_pass(tmp_path, data, monkeypatch):
    # Weight 0 still sent every step's gradient back through the perceptual network (LPIPS: a whole VGG-16).
    seed_everything(0)
    losses = TokenizerLossConfig(perceptual_weight=0.0)
    trainer = TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=2), tmp_path, *data)
    scored = []

    def watched(recon, images):
        scored.append(recon.requires_grad)
        return perceptual(recon, images)

    perceptual = trainer.perceptual
    monkeypatch.setattr(trainer, "perceptual", watched)
    trainer.fit()
    assert scored == [False, False]  # computed each step, outside the graph
    assert all("perceptual_loss" in record for record in read_metrics(tmp_path))
