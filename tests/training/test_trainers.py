"""Tiny tokenizer and transformer train on CPU: losses fall, metrics are logged, the exported pipeline samples."""

import pytest
import torch
from training_helpers import read_metrics, tiny_configs, tiny_raster_parts, train_config

from nextscale.data.token_dataset import TokenShardDataset
from nextscale.data.token_manifest import write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TokenizerLossConfig, TransformerObjective, seed_everything
from nextscale.training.export import export_run, load_run_model, load_tokenizer
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _mean(values):
    return sum(values) / len(values)


def test_tokenizer_loss_falls_with_gan_and_metrics(tmp_path, data):
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tiny_configs()[0])
    losses = TokenizerLossConfig(disc_start=15, disc_channels=32, disc_layers=2, dead_code_every=10)
    config = train_config(
        total_steps=30,
        batch_size=16,
        betas=(0.5, 0.9),
        weight_decay=0.0,
        lr_schedule="constant",
        eval_every=30,
        preview_every=30,
    )
    trainer = TokenizerTrainer(tokenizer, losses, config, tmp_path, *data)
    trainer.fit()
    records = read_metrics(tmp_path)
    recon = [r["recon_loss"] for r in records]
    assert _mean(recon[-5:]) < 0.85 * _mean(recon[:5])
    assert "code_usage/scale2" in records[-1] and "disc_loss" in records[-1] and "disc_loss" not in records[0]
    evaluation = read_metrics(tmp_path, "eval")[-1]
    assert {"mse/scale0", "psnr/scale2"} <= set(evaluation)
    assert (tmp_path / "previews" / "step-00000030.png").is_file()
    exported = export_run(tmp_path, tmp_path / "exported")
    assert torch.equal(load_tokenizer(exported).quantizer.codebook.weight, trainer.ema.module.quantizer.codebook.weight)


def test_transformer_loss_falls_and_pipeline_samples(tmp_path, data):
    tokenizer_config, transformer_config = tiny_configs()
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(total_steps=30, batch_size=16, lr=3e-3, eval_every=30, preview_every=30, ema_decay=0.9)
    trainer = TransformerTrainer(transformer, tokenizer, objective, config, tmp_path / "run", *data)
    trainer.fit()
    records = read_metrics(tmp_path / "run")
    assert _mean([r["loss"] for r in records[-5:]]) < 0.7 * _mean([r["loss"] for r in records[:5]])
    assert {"scale_loss/scale0", "scale_accuracy/scale2"} <= set(records[-1])
    evaluation = read_metrics(tmp_path / "run", "eval")[-1]
    assert {"loss", "scale_loss/scale1", "token_error/scale2"} <= set(evaluation)
    assert (tmp_path / "run" / "previews" / "step-00000030.png").is_file()

    pipe = Pipeline.from_pretrained(export_run(tmp_path / "run", tmp_path / "pipe"))
    assert torch.equal(pipe.transformer.head.weight, trainer.ema.module.head.weight)
    first = pipe(class_labels=[0, 3], seed=7, output_type="pt")
    again = pipe(class_labels=[0, 3], seed=7, output_type="pt")
    assert first.images.shape == (2, 1, 16, 16) and torch.equal(first.tokens, again.tokens)
    raw = load_run_model(tmp_path / "run", raw=True)
    assert torch.equal(raw.head.weight, trainer.raw_model.head.weight)


def test_token_shards_train_exactly_like_images(tmp_path, data):
    tokenizer_config, transformer_config = tiny_configs(deterministic=True)
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval()
    train_set, _ = data
    write_token_shards(tokenizer, train_set, tmp_path / "tokens", batch_size=32, shard_size=64)
    write_manifest(tokenizer, len(train_set), tmp_path / "tokens", shard_size=64, source="assets")
    shards = TokenShardDataset(tmp_path / "tokens", tokenizer)
    images = torch.stack([train_set[i][0] for i in (0, 65, 199)])
    expected = tokenizer.tokens_from_indices(tokenizer.encode(images))
    assert torch.equal(torch.stack([shards[i][0] for i in (0, 65, 199)]), expected)
    assert [shards[i][1] for i in (0, 65, 199)] == [train_set[i][1] for i in (0, 65, 199)]

    losses = {}
    for name, dataset in (("images", train_set), ("tokens", shards)):
        seed_everything(1)
        transformer = build_transformer(transformer_config, TransformerObjective())
        trainer = TransformerTrainer(
            transformer, tokenizer, TransformerObjective(), train_config(total_steps=3), tmp_path / name, dataset
        )
        trainer.fit()
        losses[name] = [r["loss"] for r in read_metrics(tmp_path / name)]
    assert losses["images"] == losses["tokens"]

    seed_everything(123)
    other = MultiScaleVQVAE(tokenizer_config)
    try:
        TokenShardDataset(tmp_path / "tokens", other)
    except ValueError as err:
        assert "different tokenizer" in str(err)
    else:
        raise AssertionError("a different tokenizer must be refused")


def test_progressive_training_grows_scales(tmp_path, data):
    tokenizer_config, transformer_config = tiny_configs()
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective(progressive=0.8, progressive_first_stage=0, progressive_stage_warmup=2)
    transformer = build_transformer(transformer_config, objective)
    trainer = TransformerTrainer(
        transformer, tokenizer, objective, train_config(total_steps=10, warmup=2), tmp_path, data[0]
    )
    assert [trainer.stage(s) for s in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    # VAR's prog_it counts from 1 in a stage: 1/2 on the first step of stage 1, then 1; the first and the last
    # (full) stage ramp nothing in
    assert trainer.stage_start(5) == 4 and trainer.newest_scale_weight(4) == 0.5
    assert trainer.newest_scale_weight(5) == 1.0 and trainer.newest_scale_weight(1) == 1.0
    assert trainer.stage_start(7) == 7 and trainer.newest_scale_weight(7) == 1.0
    trainer.fit()
    stages = [r["stage"] for r in read_metrics(tmp_path)]
    assert stages == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_dead_codes_restart_and_reset_their_adam_moments(tmp_path, data):
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tiny_configs()[0])
    losses = TokenizerLossConfig(dead_code_every=2, dead_code_min_hits=0.5)
    trainer = TokenizerTrainer(tokenizer, losses, train_config(total_steps=1, ema_decay=0.999), tmp_path, *data)
    trainer.fit()  # one step: Adam moments exist, usage EMA holds one batch of hits
    quantizer = trainer.raw_model.quantizer
    dead = quantizer.code_usage_ema.sum(0) < 0.5
    assert 0 < int(dead.sum()) < quantizer.vocab_size
    before = quantizer.codebook.weight.detach().clone()
    trainer.after_optimizer_step()  # step 1 -> restart due at step 2
    after = quantizer.codebook.weight.detach()
    assert not torch.equal(after[dead], before[dead]) and torch.equal(after[~dead], before[~dead])
    moments = trainer.optimizers["model"].state[quantizer.codebook.weight]
    assert moments["exp_avg"][dead].abs().sum() == 0 and moments["exp_avg_sq"][~dead].abs().sum() > 0
    # the EMA weights (what export writes) take the new codes at once, not over about 1 / (1 - decay) steps
    ema_codebook = trainer.ema.module.quantizer.codebook.weight
    assert torch.equal(ema_codebook[dead], after[dead]) and not torch.equal(ema_codebook[~dead], after[~dead])


def test_discriminator_too_deep_for_the_images_is_refused_before_training(tmp_path, data):
    # 16 px images and the default three layers: the PatchGAN forward would fail at the disc_start step
    losses = TokenizerLossConfig(disc_start=2, disc_channels=32, disc_layers=3)
    with pytest.raises(ValueError, match="16 px images are too small .*--disc-layers 2"):
        TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=4), tmp_path, *data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"perceptual_weight": -1.0}, "--perceptual-weight must be >= 0"),
        ({"l1_weight": float("nan")}, "--l1-weight must be >= 0"),
        ({"disc_start": -5}, "--disc-start must be a step >= 0"),
        ({"dead_code_every": 0}, "--dead-code-every must be >= 1"),
        ({"dead_code_every": -3}, "--dead-code-every must be >= 1"),  # would restart every 3 steps (Python's %)
        ({"disc_start": 0, "disc_lr": -1e-4}, "--disc-lr must be > 0"),
        ({"lpips_backbone": "vgg16.safetensors"}, "used only with --perceptual lpips, not 'ssim'"),  # else ignored
        ({"l1_weight": 0.0, "perceptual": "none", "disc_start": 0}, "no reconstruction term"),
    ],
)
def test_loss_settings_that_would_train_silently_wrong_are_refused(tmp_path, data, change, message):
    losses = TokenizerLossConfig(disc_channels=32, disc_layers=2, **change)
    with pytest.raises(ValueError, match=message):
        TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=2), tmp_path, *data)
    assert not (tmp_path / "checkpoints").exists()


def test_bf16_autocast_runs_on_cpu(tmp_path, data):
    tokenizer_config, transformer_config = tiny_configs()
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    losses = TokenizerLossConfig(disc_start=1, disc_channels=32, disc_layers=2)
    config = train_config(total_steps=2, precision="bf16", eval_every=2)
    TokenizerTrainer(tokenizer, losses, config, tmp_path / "tok", *data).fit()
    objective = TransformerObjective()
    trainer = TransformerTrainer(
        build_transformer(transformer_config, objective), tokenizer, objective, config, tmp_path / "var", *data
    )
    trainer.fit()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in read_metrics(tmp_path / "var"))
    with pytest.raises(ValueError, match="fp16"):
        TransformerTrainer(
            build_transformer(transformer_config, objective),
            tokenizer,
            objective,
            train_config(precision="fp16"),
            tmp_path / "fp16",
            *data,
        )


def test_raster_baseline_trains_exports_and_samples_through_the_pipeline(tmp_path, data):
    from nextscale.sampling.raster_pipeline import RasterPipeline

    seed_everything(0)
    tokenizer, config = tiny_raster_parts()
    objective = TransformerObjective()
    transformer = build_transformer(config, objective)
    train = train_config(total_steps=30, batch_size=16, lr=3e-3, eval_every=30, preview_every=30, ema_decay=0.9)
    trainer = TransformerTrainer(transformer, tokenizer, objective, train, tmp_path / "run", *data)
    trainer.fit()
    records = read_metrics(tmp_path / "run")
    assert _mean([r["loss"] for r in records[-5:]]) < 0.8 * _mean([r["loss"] for r in records[:5]])
    evaluation = read_metrics(tmp_path / "run", "eval")[-1]
    assert {"loss", "scale_loss/scale0", "token_error/scale0"} <= set(evaluation)
    assert (tmp_path / "run" / "previews" / "step-00000030.png").is_file()

    pipe = Pipeline.from_pretrained(export_run(tmp_path / "run", tmp_path / "pipe"))
    assert isinstance(pipe, RasterPipeline)
    out = pipe(class_labels=[0, 3], seed=7, cfg=2.0, top_k=20, output_type="pt")
    assert out.images.shape == (2, 1, 16, 16) and out.tokens.shape == (2, config.side * config.side)
    assert torch.equal(out.tokens, pipe(class_labels=[0, 3], seed=7, cfg=2.0, top_k=20, output_type="pt").tokens)
    with pytest.raises(ValueError, match="raster"):
        pipe.inpaint(out.images[:1], box=(0.0, 0.0, 0.5, 0.5))


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"label_smoothing": 1.5}, r"--label-smoothing must be in \[0, 1\]"),
        ({"label_smoothing": -0.1}, r"--label-smoothing must be in \[0, 1\]"),
        ({"progressive": 1.5}, r"--progressive is the fraction of training .* in \[0, 1\]"),
        ({"init_std": -1.0}, r"--init-std must be > 0"),  # the official code's "auto"; here that is left out
        ({"init_std": 0.0}, r"--init-std must be > 0"),
    ],
)
def test_objective_refuses_out_of_range_smoothing_and_progressive(settings, message):
    """Refused in one line before any work (smoothing used to fail at the first step deep in F.cross_entropy, and
    a progressive fraction above 1 silently never trained the last scales)."""
    with pytest.raises(ValueError, match=message):
        TransformerObjective(**settings)
    TransformerObjective(label_smoothing=0.1, progressive=1.0)  # the ends of the ranges are fine


class _TwoMaps(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, x[:, :, ::2, ::2]]


def test_lpips_files_that_cannot_score_the_images_are_refused_before_training(tmp_path, data):
    """Three heads for a two-map backbone used to fail at the first step, after the run had started."""
    from safetensors.torch import save_file

    backbone, heads = tmp_path / "backbone.pt", tmp_path / "heads.safetensors"
    torch.jit.save(torch.jit.script(_TwoMaps()), str(backbone))
    save_file({f"lin{idx}.weight": torch.ones(1, 3, 1, 1) for idx in range(3)}, str(heads))
    losses = TokenizerLossConfig(perceptual="lpips", lpips_backbone=str(backbone), lpips_heads=str(heads))
    with pytest.raises(ValueError, match=r"LPIPS files .* cannot score 16 px images: 3 LPIPS heads for 2 backbone"):
        TokenizerTrainer(MultiScaleVQVAE(tiny_configs()[0]), losses, train_config(total_steps=1), tmp_path, *data)
    assert not (tmp_path / "checkpoints").exists()
