"""Training the multi-scale VQ-VAE tokenizer (VAR stage 1).

Loss per micro-batch, with x the images and x' the reconstruction:

    nll  = l1 |x - x'| + l2 (x - x')^2 + w_p * perceptual(x', x)
    loss = nll + w_q * quantizer loss                       (commitment beta lives inside the quantizer)
         + [after disc_start] w_d * lambda * hinge_G(D(x'))  (lambda: VQGAN adaptive weight)
         + [after disc_start] hinge_D(D(x), D(x'.detach()))  (reaches only the discriminator's weights)

The two adversarial terms are summed into one backward: the generator term is computed with the
discriminator's weights frozen and the discriminator term with the reconstruction detached, so each
optimizer sees exactly its own gradient. Code-hit counts are all-reduced over ranks before they update
the usage EMA, so every rank holds the same statistics; usage per scale is logged, and a collapsed codebook is
warned about.

References: Esser et al., "Taming Transformers" (VQGAN), CVPR 2021; VAR ``models/quant.py`` (usage EMA).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from nextscale import distributed
from nextscale.data.grids import save_grid
from nextscale.tokenizer.discriminator import DiscriminatorConfig, PatchDiscriminator, logits_side
from nextscale.tokenizer.losses import (
    adaptive_adversarial_weight,
    build_perceptual_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TokenizerLossConfig, TrainConfig
from nextscale.training.loop import Trainer
from nextscale.training.optim import build_adamw

log = distributed.get_logger(__name__)

# Finest-scale code usage (the official "used code" share) below which a run is told its codebook collapsed.
COLLAPSE_PERCENT = 10.0


def freeze_unused_phis(tokenizer: MultiScaleVQVAE) -> list[int]:
    """Freeze the Phi convolutions no scale of this schedule uses; returns their indices.

    Example: 4 Phis (the official tokenizer) on 3 scales use Phis 0, 1 and 3 (``phi_index_table``), so Phi 2
    never gets a gradient, and DDP, which waits for every trainable parameter's gradient, stops at the second
    step. Frozen, it stays in the weights (the state dict and the official checkpoints keep their shape).
    """
    quantizer = tokenizer.quantizer
    unused = sorted(set(range(len(quantizer.phis))) - set(quantizer.phi_index))
    for index in unused:
        quantizer.phis[index].requires_grad_(False)
    return unused


def check_losses(losses: TokenizerLossConfig) -> None:
    """Refuse loss settings that would train silently wrong; the messages name the command's flags.

    A negative weight maximises its loss, a negative ``--dead-code-every`` restarts every |N| steps (Python's
    modulo), 0 would mean "never" (that is 'none'), LPIPS files next to ``--perceptual ssim`` are ignored, and
    without a pixel or perceptual term the decoder learns nothing.
    """
    weights = {
        "--l1-weight": losses.l1_weight,
        "--l2-weight": losses.l2_weight,
        "--perceptual-weight": losses.perceptual_weight,
        "--quant-weight": losses.quant_weight,
        "--disc-weight": losses.disc_weight,
        "--dead-code-min-hits": losses.dead_code_min_hits,
    }
    for flag, value in weights.items():
        if not value >= 0:  # also NaN
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if not losses.quant_weight > 0:
        # the straight-through reconstruction carries no gradient to the codes: the quantizer loss is their only one
        raise ValueError(
            f"--quant-weight must be > 0, got {losses.quant_weight}: the quantizer loss is the only gradient of the "
            "codebook and the Phi convs (the reconstruction reaches the encoder straight through, past them)"
        )
    perceptual_weight = losses.perceptual_weight if losses.perceptual != "none" else 0.0
    if not (losses.l1_weight or losses.l2_weight or perceptual_weight):
        # the decoder would learn nothing (and the adaptive weight divides the gradient of a constant)
        raise ValueError("no reconstruction term: give --l1-weight, --l2-weight or --perceptual-weight a value > 0")
    if losses.disc_start is not None and losses.disc_start < 0:
        raise ValueError(f"--disc-start must be a step >= 0 ('none': no discriminator), got {losses.disc_start}")
    if losses.disc_start is not None and (losses.disc_channels < 1 or losses.disc_layers < 1):
        raise ValueError(
            f"--disc-channels and --disc-layers must be >= 1, got {losses.disc_channels} and {losses.disc_layers}"
        )
    if losses.disc_lr is not None and not losses.disc_lr > 0:
        raise ValueError(f"--disc-lr must be > 0 (default: the tokenizer's lr), got {losses.disc_lr}")
    if not losses.max_adaptive_weight > 0:
        raise ValueError(f"max_adaptive_weight must be > 0, got {losses.max_adaptive_weight}")
    if losses.dead_code_every is not None and losses.dead_code_every < 1:
        raise ValueError(f"--dead-code-every must be >= 1 ('none': never restart), got {losses.dead_code_every}")
    if losses.perceptual != "lpips" and (losses.lpips_backbone or losses.lpips_heads):
        raise ValueError(
            f"--lpips-backbone and --lpips-heads are used only with --perceptual lpips, not {losses.perceptual!r}: "
            "add --perceptual lpips or drop them"
        )


def check_lpips_fits(perceptual: nn.Module, config) -> None:
    """Score one blank pair of training-size images, so that LPIPS files that cannot score them (heads of another
    backbone, images too small for its pooling) are refused in one line before training, not at its first step."""
    side = config.image_size
    blank = torch.zeros(1, config.in_channels, side, side)
    try:
        with torch.no_grad():
            perceptual(blank, blank)
    except (RuntimeError, ValueError, IndexError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the LPIPS files (--lpips-backbone, --lpips-heads) cannot score {side} px images: {reason}"
        ) from err


class TokenizerTrainer(Trainer):
    """Trains a MultiScaleVQVAE (and a PatchGAN when ``losses.disc_start`` is set).

    Args:
        tokenizer: the model (fresh, or initialised from a pretrained/official tokenizer).
        losses: loss configuration.
        config, run_dir, train_dataset, eval_dataset, run_config, dist_info: see ``Trainer``.
    """

    progress_metric = "tokenizer_loss"  # "loss" jumps by the discriminator's hinge loss when the GAN starts

    def __init__(
        self,
        tokenizer: MultiScaleVQVAE,
        losses: TokenizerLossConfig,
        config: TrainConfig,
        run_dir,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        run_config: dict[str, Any] | None = None,
        dist_info: distributed.DistInfo | None = None,
    ) -> None:
        if config.strategy == "fsdp":
            # FSDP would shard the VQ-VAE as one unit, and the held-out evaluation (and dead-code restarts) call
            # the encoder, quantizer and decoder outside forward, on sharded weights; a VQ-VAE fits every GPU.
            raise ValueError(
                "the tokenizer trains with --strategy ddp (it fits on every GPU); fsdp is for the transformer"
            )
        check_losses(losses)
        if losses.disc_start is not None and losses.disc_start >= config.total_steps:
            # e.g. VQGAN's usual 20k-50k start in a shorter run: no adversarial step at all, only a larger checkpoint
            log.warning(
                "--disc-start %d is not before the run's last step %d: the discriminator never trains in this run "
                "(lower --disc-start, or 'none' to train without it)",
                losses.disc_start,
                config.total_steps,
            )
        freeze_unused_phis(tokenizer)
        self.losses = losses
        self.perceptual = build_perceptual_loss(losses.perceptual, losses.lpips_backbone, losses.lpips_heads)
        if losses.perceptual == "lpips":
            check_lpips_fits(self.perceptual, tokenizer.config)  # refused now, not at the first step
        modules: dict[str, nn.Module] = {"model": tokenizer}
        if losses.disc_start is not None:
            disc_config = DiscriminatorConfig(
                tokenizer.config.in_channels, losses.disc_channels, losses.disc_layers, losses.disc_norm
            )
            logits_side(disc_config, tokenizer.config.image_size)  # refused now, not at the disc_start step
            modules["discriminator"] = PatchDiscriminator(disc_config)
        run_config = {
            "kind": "tokenizer",
            "tokenizer": dataclasses.asdict(tokenizer.config),
            "losses": dataclasses.asdict(losses),
            **(run_config or {}),
        }
        self._last_images: torch.Tensor | None = None
        self._collapse_warned = False
        super().__init__(modules, config, run_dir, train_dataset, eval_dataset, run_config, dist_info)
        if self.perceptual is not None:
            self.perceptual.to(self.device)

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        optimizers = {"model": build_adamw(self.modules["model"], cfg.peak_lr, cfg.betas, cfg.eps)}
        if "discriminator" in self.modules:
            lr = self.losses.disc_lr if self.losses.disc_lr is not None else cfg.peak_lr
            optimizers["discriminator"] = build_adamw(self.modules["discriminator"], lr, cfg.betas, cfg.eps)
        return optimizers

    def _usage_threshold(self, batch_size: int) -> float:
        """The official "used code" threshold: world * (B * h * w) / V * 0.08 EMA hits."""
        config = self.raw_model.config
        return self.dist.world_size * batch_size * config.latent_side**2 / config.vocab_size * 0.08

    def adversarial_active(self) -> bool:
        return self.losses.disc_start is not None and self.step >= self.losses.disc_start

    def train_step(self, batch: Any) -> dict[str, Any]:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        self._last_images = images
        out = self.model(images, update_usage=False)
        hits = distributed.all_reduce_sum(out.hits)  # (K, V): global statistics on every rank
        quantizer = self.raw_model.quantizer
        quantizer.update_usage(hits)
        losses = self.losses
        recon = out.reconstruction
        rec = reconstruction_loss(recon, images, losses.l1_weight, losses.l2_weight)
        nll = rec
        metrics: dict[str, Any] = {"recon_loss": rec.detach(), "quant_loss": out.quant_loss.detach()}
        if self.perceptual is not None and losses.perceptual_weight:
            perceptual = self.perceptual(recon, images)
            nll = nll + losses.perceptual_weight * perceptual
            metrics["perceptual_loss"] = perceptual.detach()
        elif self.perceptual is not None:  # weight 0: logged only, without a backward pass through the network
            with torch.no_grad():
                metrics["perceptual_loss"] = self.perceptual(recon.detach(), images)
        loss = nll + losses.quant_weight * out.quant_loss
        metrics["tokenizer_loss"] = loss.detach()
        if self.adversarial_active():
            disc_plain, disc = self.modules["discriminator"], self.wrapped["discriminator"]
            disc_plain.requires_grad_(False)  # the generator term must not train the discriminator
            generator_loss = hinge_generator_loss(disc_plain(recon))
            disc_plain.requires_grad_(True)
            last_layer = self.raw_model.decoder.conv_out.weight
            weight = adaptive_adversarial_weight(
                nll,
                generator_loss,
                last_layer,
                losses.max_adaptive_weight,
                reduce=distributed.all_reduce_mean,
                loss_scale=self.scaler.get_scale(),  # 1.0 unless fp16: there, gradients that do not underflow
            )
            logits = disc(torch.cat((images, recon.detach())))  # one call: real and fake share the DDP hooks
            logits_real, logits_fake = logits.chunk(2)
            disc_loss = hinge_discriminator_loss(logits_real, logits_fake)
            loss = loss + losses.disc_weight * weight * generator_loss
            # "loss" also carries the discriminator's hinge term (one backward trains both), so it jumps by about 1 when
            # the GAN starts; "tokenizer_loss" is the tokenizer's own objective, comparable across the start.
            metrics["tokenizer_loss"] = loss.detach()
            loss = loss + disc_loss
            metrics.update(
                generator_loss=generator_loss.detach(),
                disc_loss=disc_loss.detach(),
                adaptive_weight=weight,
                logits_real=logits_real.detach().mean(),
                logits_fake=logits_fake.detach().mean(),
            )
        metrics["code_usage"] = torch.tensor(quantizer.usage_percent(self._usage_threshold(images.shape[0])))
        metrics["loss"] = loss
        return metrics

    def log_metrics(self, metrics: dict[str, float], split: str) -> None:
        super().log_metrics(metrics, split)
        if split == "train":
            self._warn_if_collapsed(metrics)

    def _warn_if_collapsed(self, metrics: dict[str, float]) -> None:
        """Warn once per start when the finest scale uses under COLLAPSE_PERCENT of the codebook, once the usage EMA
        has settled (100 updates per scale: it has then forgotten the all-zero start); the per-scale numbers alone are
        easy to miss in a long log."""
        quantizer = self.raw_model.quantizer
        finest = len(quantizer.sides) - 1
        usage = metrics.get(f"code_usage/scale{finest}")
        settled = int(quantizer.usage_updates) >= 100 * len(quantizer.sides)
        if self._collapse_warned or usage is None or not settled or usage >= COLLAPSE_PERCENT:
            return
        self._collapse_warned = True
        advice = (
            "restart dead codes with --dead-code-every 100 --dead-code-min-hits 0.5, or lower --vocab-size"
            if self.losses.dead_code_every is None
            else "lower --vocab-size or --dead-code-every, or raise --dead-code-min-hits"
        )
        log.warning(
            "codebook collapse: at step %d only %.1f%% of the %d codes are in use at the finest scale; %s",
            self.step,
            usage,
            quantizer.vocab_size,
            advice,
        )

    def after_optimizer_step(self) -> None:
        """Every ``dead_code_every`` steps, rank 0 re-seeds dead codes from the encoder features of the last global
        micro-batch (every rank's part, in the order one process would see them); all ranks copy the result."""
        every = self.losses.dead_code_every
        if not every or (self.step + 1) % every or self._last_images is None:
            return
        quantizer = self.raw_model.quantizer
        codebook = quantizer.codebook.weight
        before = codebook.detach().clone()
        with torch.no_grad():
            features = distributed.gather_global_batch(self.raw_model.encode_features(self._last_images))
        if self.dist.is_main:
            restarted = quantizer.restart_dead_codes(features, self.losses.dead_code_min_hits)
            if restarted:
                log.info("step %d: restarted %d dead codes from encoder features", self.step + 1, restarted)
        distributed.broadcast_tensor(codebook.data)
        distributed.broadcast_tensor(quantizer.code_usage_ema)
        # Adam moments of the restarted rows describe the old codes: start them afresh.
        changed = (codebook.detach() != before).any(dim=1)
        if self.ema is not None:  # else the exported EMA keeps each dead row for about 1 / (1 - decay) more steps
            ema_codebook = self.ema.module.quantizer.codebook.weight
            ema_codebook.data[changed] = codebook.detach()[changed].to(ema_codebook.dtype)
        state = self.optimizers["model"].state.get(codebook, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][changed] = 0.0

    def eval_step(self, batch: Any, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per image and scale of ``model`` (the raw or the EMA weights): MSE and PSNR of the reconstruction from the
        first k scales (B, K)."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        model = distributed.unwrap(model)
        features = model.encode_features(images).float()
        with torch.autocast(self.device.type, enabled=False):  # the code search runs in float32, as in training
            f_hats = model.quantizer.features_to_fhats(features)
        mse = torch.stack(
            [(model.decode_fhat(f_hat).float() - images.float()).square().flatten(1).mean(1) for f_hat in f_hats], dim=1
        )  # (B, K)
        psnr = 10 * torch.log10(4.0 / mse.clamp_min(1e-10))  # images span [-1, 1]: peak-to-peak 2
        return {"mse": mse, "psnr": psnr}

    def preview(self, step: int) -> None:
        """Originals (top row) and EMA reconstructions (bottom row) of 8 held-out images spread over the set (a
        folder's images come sorted by class: the first 8 would often show one class only)."""
        source = self.eval_dataset if self.eval_dataset is not None else self.train_dataset
        count = min(8, len(source))
        items = [source[i * len(source) // count] for i in range(count)]
        images = torch.stack([item[0] if isinstance(item, (list, tuple)) else item for item in items]).to(self.device)
        with self.preview_model() as model:
            recon = model.reconstruct(images)
        path = save_grid(
            torch.cat((images, recon)).float().cpu(), self.run_dir / "previews" / f"step-{step:08d}.png", nrow=count
        )
        log.info("step %d: originals (top) and reconstructions (bottom) in %s", step, path)
