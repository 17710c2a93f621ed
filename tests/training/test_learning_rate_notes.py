"""A run says its peak lr and how it was derived, hints at --lr when VAR's batch rule leaves a small run almost no
rate, and notes a transformer loss still at chance (ln vocab) at eval lines and at the end."""

import math

import pytest
import torch
from test_cli import REPO, TINY_DATA, run_command
from training_helpers import tiny_configs, train_config

from nextscale.training.batches import micro_batch_size
from nextscale.training.learning_rate_notes import LOW_PEAK_LR, chance_note, peak_lr_line


def test_the_start_line_derives_the_peak_and_hints_at_lr_below_the_threshold():
    small = peak_lr_line(train_config(lr=None, base_lr=1e-4, batch_size=8), "transformer")
    assert small.startswith("peak lr 3.1e-06 = --base-lr 0.0001 x batch 8 / 256 (VAR's rule; --lr sets the peak")
    assert "; too low for a small run to learn much: small runs here train with --lr 2e-3 to 3e-3, as " in small
    official = peak_lr_line(train_config(lr=None, base_lr=1e-4, batch_size=768), "transformer")
    assert official.startswith("peak lr 0.0003 = --base-lr 0.0001 x batch 768 / 256") and "too low" not in official
    assert 1e-4 * 96 / 256 > LOW_PEAK_LR  # the batch of 96 an earlier error suggested is not flagged
    tokenizer = peak_lr_line(train_config(lr=None, base_lr=1e-4, batch_size=16), "tokenizer")
    assert "too low" in tokenizer and "configs/own_images_tokenizer.json" in tokenizer


def test_a_peak_given_by_lr_is_named_as_set_directly_without_a_hint():
    line = peak_lr_line(train_config(lr=1e-6, batch_size=8), "transformer")
    assert line == "peak lr 1e-06 (--lr, set directly; VAR's rule --base-lr x batch / 256 is not used)"


def test_the_chance_note_names_the_losses_at_chance_and_suggests_a_higher_lr():
    note = chance_note(40, 512, 3.125e-6, {"training": 6.2371, "held-out": 6.2369})
    assert note.startswith("note: at step 40 the training loss 6.2371 and held-out loss 6.2369 are still about ")
    assert f"ln(512) = {math.log(512):.4f}, the uniform guess" in note
    assert "higher --lr than the peak 3.1e-06" in note and "or more steps" in note
    only_training = chance_note(40, 512, 3e-3, {"training": 6.2, "held-out": 4.46})  # 6.2 >= 0.99 ln 512 = 6.176
    assert "the training loss 6.2000 is still" in only_training and "held-out" not in only_training
    assert chance_note(40, 512, 3e-3, {"training": 6.1, "held-out": None}) is None  # learning: 6.1 < 6.176


def test_the_batch_error_says_the_peak_lr_falls_with_a_smaller_batch_unless_lr_sets_it():
    with pytest.raises(ValueError, match=r"lower --batch-size to at most 96 \(the peak lr falls with it"):
        micro_batch_size(train_config(lr=None, batch_size=768), 1, 96, None)
    with pytest.raises(ValueError) as explicit:
        micro_batch_size(train_config(lr=3e-3, batch_size=768), 1, 96, None)
    assert "lower --batch-size to at most 96, or raise --grad-accum" in str(explicit.value)


def test_help_shows_the_lr_defaults_and_the_rule():
    import argparse

    from nextscale.cli import train, train_tokenizer

    for module, lr_default in ((train, "default none: the rule"), (train_tokenizer, "default 0.0001")):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        text = " ".join(parser.format_help().split())
        assert "lr per 256 samples (default 0.0001): peak lr = base-lr x batch-size / 256, VAR's rule" in text
        assert lr_default in text


def test_a_tiny_default_lr_run_says_its_peak_and_that_its_loss_is_at_chance(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(REPO)
    from nextscale.pretrained import save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    torch.manual_seed(0)
    save_component(MultiScaleVQVAE(tiny_configs()[0]), tmp_path / "tok")
    flags = f"--tokenizer {tmp_path / 'tok'} --data {TINY_DATA} --preset tiny --steps 2 --batch-size 8 --warmup 0"
    flags += f" --eval-every 1 --eval-samples 8 --log-every 1 --no-progress --run-dir {tmp_path / 'run'}"
    with caplog.at_level("INFO"):
        assert run_command("train", flags) == 0
    assert "peak lr 3.1e-06 = --base-lr 0.0001 x batch 8 / 256 (VAR's rule" in caplog.text
    eval_notes = [r.getMessage() for r in caplog.records if "the uniform guess" in r.getMessage()]
    assert len(eval_notes) == 1 and eval_notes[0].startswith("note: at step 1 the held-out loss")  # once
    end = capsys.readouterr().out
    assert "note: at step 2 the training loss" in end and "higher --lr than the peak 3.1e-06" in end


def test_train_tokenizer_says_its_peak_lr(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(REPO)
    with caplog.at_level("INFO"):
        flags = f"--config configs/tiny_tokenizer.json --steps 1 --no-progress --run-dir {tmp_path / 'tok'}"
        assert run_command("train_tokenizer", flags) == 0
    assert "peak lr 0.002 (--lr, set directly; VAR's rule --base-lr x batch / 256 is not used)" in caplog.text
