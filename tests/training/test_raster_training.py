"""The raster-scan baseline in the transformer trainer: what it refuses, and how its previews sample."""

import pytest
import torch
from training_helpers import tiny_data, tiny_raster_parts, train_config

from nextscale.training.config import TransformerObjective
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def raster_trainer(tmp_path, **overrides) -> TransformerTrainer:
    tokenizer, config = tiny_raster_parts()
    objective = TransformerObjective()
    train, _ = tiny_data()
    return TransformerTrainer(
        build_transformer(config, objective), tokenizer, objective, train_config(**overrides), tmp_path, train
    )


def test_captions_are_refused_without_pointing_to_a_text_encoder(tmp_path):
    # the class-model message says "pass --text-encoder", which `train --raster` then refuses: advice in a circle
    trainer = raster_trainer(tmp_path)
    images = torch.zeros(2, 1, 16, 16)
    with pytest.raises(ValueError, match="the raster baseline is class-conditional and needs labelled data") as error:
        trainer.prepare((images, ["a shirt", "a shoe"]))
    assert "--text-encoder" not in str(error.value)


def test_previews_of_the_raw_weights_sample_in_eval_mode(tmp_path, monkeypatch):
    """Without EMA and without held-out data nothing else puts the model in eval mode before a preview."""
    import nextscale.training.transformer_trainer as transformer_trainer

    modes = []
    original = transformer_trainer.RasterSampler.sample

    def spy(self, *args, **kwargs):
        modes.append(self.transformer.training)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformer_trainer.RasterSampler, "sample", spy)
    trainer = raster_trainer(tmp_path, total_steps=2, ema_decay=None, preview_every=2)
    trainer.fit()
    assert modes == [False]
    assert trainer.raw_model.training  # given back in the mode training left it in
