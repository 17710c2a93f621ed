"""Training the next-scale transformer (VAR stage 2, or STAR's text model) on a frozen tokenizer; the raster-scan
baseline (a RasterTransformer over a one-map tokenizer schedule) trains here too, on its tokens.

Per micro-batch: the tokenizer turns images into K index maps (or token shards are read back), the
targets are those indices concatenated coarse to fine (B, L) and the input is the teacher-forcing latent
(B, L - 1, code_dim) that the quantizer builds from them. The condition is the batch's class labels or,
for a text model, its captions encoded by the frozen text encoder (each distinct caption once), with
the empty prompt's encoding as the null row that the model swaps in at ``cond_drop_rate`` (CFG).
The loss is the per-token cross-entropy (optional label smoothing), averaged over tokens and then over
the batch, with no per-scale weights, exactly as the official trainer. Loss and accuracy are logged per scale.

Official defaults (``TrainConfig`` + this module): AdamW betas (0.9, 0.95), weight decay 0.05 by the
rule of optim.py, peak lr = 1e-4 * batch / 256, ``lin0`` schedule with 2 % warm-up and end factor 0.01,
gradient clipping 2.0, condition dropout 0.1 inside the model, init knobs of ``init_weights``.

Progressive training (VAR ``pg``; off by default): during the first ``progressive`` fraction of training
only a prefix of the scales is trained (``schedules.progressive_stage``); the newest scale's loss ramps in
over ``progressive_stage_warmup`` steps. Unlike the official trainer, the loss is the mean over the active
tokens (the official divides by the full L), so its scale does not jump at each stage change.

Text models only (both off by default): token dropping (STAR ``drop_scale_length``, ``keep_tokens``) trains each
micro-batch on N of the L positions, a random set of the finest ones removed (``token_dropping.py``), with the
loss the mean over the kept tokens; held-out evaluation stays on full sequences. ``caption_drop_min_chars``
lets condition dropout replace only captions that long (the official loader: longer than 20 characters).

References: VAR ``trainer.py`` (``train_step``), ``train.py``; VAR_REFERENCE.md section 5.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from nextscale import distributed
from nextscale.data.grids import prompt_label, save_grid
from nextscale.data.token_manifest import weights_hash
from nextscale.evaluation.held_out import held_out_metrics, per_scale_mean
from nextscale.pretrained import load_component, save_component
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.raster_sampler import RasterSampler, check_raster_fit
from nextscale.sampling.sampler import ScaleSampler, check_components_fit
from nextscale.text import TextEncoder, save_text_encoder_reference
from nextscale.text.cache import CachedTextEncoder
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TrainConfig, TransformerObjective
from nextscale.training.learning_rate_notes import chance_note
from nextscale.training.loop import Trainer
from nextscale.training.sampler_head import draw_known, hidden_position_mean
from nextscale.training.schedules import progressive_newest_weight, progressive_stage
from nextscale.training.token_dropping import kept_positions, per_scale_mean_of_kept, token_drop_start
from nextscale.transformer.conditioning import ClassCondition, TextCondition
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

TOKENIZER_DIR = "tokenizer"  # inside a transformer run directory
logger = logging.getLogger(__name__)
TEXT_ENCODER_DIR = "text_encoder"  # inside a text transformer run directory
PREVIEW_PROMPTS = 8


def build_transformer(
    config: TransformerConfig | TextTransformerConfig | RasterConfig, objective: TransformerObjective
) -> ScaleTransformer | TextScaleTransformer | RasterTransformer:
    """A freshly initialised transformer (VAR, STAR or the raster baseline, by config type) with the objective's
    init knobs."""
    if isinstance(config, RasterConfig):
        model = RasterTransformer(config)
        model.init_weights(objective.init_adaln, objective.init_adaln_gamma, objective.init_head, objective.init_std)
        return model
    if isinstance(config, TextTransformerConfig):
        model = TextScaleTransformer(config)
        model.init_weights(objective.init_head, objective.init_std)
        return model
    model = ScaleTransformer(config)
    model.init_weights(objective.init_adaln, objective.init_adaln_gamma, objective.init_head, objective.init_std)
    return model


class TransformerTrainer(Trainer):
    """Trains a ScaleTransformer or a TextScaleTransformer; batches are (images or token-shard tokens, labels)
    for a class model and (images or tokens, captions) for a text model.

    Args:
        transformer: the model to train.
        tokenizer: the frozen tokenizer that defines the tokens (its quantizer builds the inputs).
        objective: loss / progressive / init settings.
        config, run_dir, train_dataset, eval_dataset, run_config, dist_info: see ``Trainer``.
        text_encoder: the frozen text encoder (text models only; wrapped in a caption cache).
    """

    # The loss is a mean over samples, each a mean over its tokens: any cut of a step into micro-batches of equal
    # size gives the same gradient, so a resume may change --grad-accum (``resume.resumed_position``).
    regroups_micro_batches = True

    def __init__(
        self,
        transformer: ScaleTransformer | TextScaleTransformer,
        tokenizer: MultiScaleVQVAE,
        objective: TransformerObjective,
        config: TrainConfig,
        run_dir,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        run_config: dict[str, Any] | None = None,
        dist_info: distributed.DistInfo | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        self.is_raster = isinstance(transformer, RasterTransformer)
        (check_raster_fit if self.is_raster else check_components_fit)(tokenizer, transformer)
        if self.is_raster and objective.progressive:
            raise ValueError("progressive training adds scales; the raster baseline has one map (use --progressive 0)")
        self.is_text = isinstance(transformer, TextScaleTransformer)
        if self.is_text != (text_encoder is not None):
            raise ValueError("a text model trains with a text encoder, a class model without one")
        if text_encoder is not None and text_encoder.width != transformer.config.text_dim:
            raise ValueError(
                f"the text encoder has width {text_encoder.width}, "
                f"the transformer expects {transformer.config.text_dim}"
            )
        self.text_encoder = text_encoder
        schedule = transformer.config.schedule
        if objective.progressive and not 0 <= objective.progressive_first_stage < schedule.num_scales:
            raise ValueError(
                f"progressive_first_stage must be in [0, {schedule.num_scales - 1}], got "
                f"{objective.progressive_first_stage}"
            )
        text_only = [
            flag
            for flag, given in (
                ("--keep-tokens", objective.keep_tokens is not None),
                ("--caption-drop-min-chars", objective.caption_drop_min_chars > 0),
            )
            if given
        ]
        if text_only and not self.is_text:
            raise ValueError(
                f"{' and '.join(text_only)} only apply to text (STAR) models; this run trains a class-conditional "
                f"{type(transformer).__name__}: leave {'it' if len(text_only) == 1 else 'them'} out"
            )
        if objective.train_sampler_head:
            if not getattr(transformer.config, "sampler_head", False):
                raise ValueError(
                    "--train-sampler-head trains a STAR model's masked-sampler head: start from a trained text model "
                    "(--init-from RUN_OR_FOLDER), which then gets a fresh head"
                )
            # The sampler stage: the main model frozen, only the head learns (its optimizer holds the head alone).
            transformer.requires_grad_(False)
            transformer.sampler_head.requires_grad_(True)
        # First position token dropping may drop (None: no dropping); checked before the run directory is used.
        self.drop_start = None
        if objective.keep_tokens is not None:
            self.drop_start = token_drop_start(schedule, objective.keep_tokens, objective.drop_tokens_from_scale)
        self.objective = objective
        self.schedule = schedule
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        run_config = {
            "kind": "transformer",
            "model_class": type(transformer).__name__,
            "transformer": dataclasses.asdict(transformer.config),
            "tokenizer": dataclasses.asdict(tokenizer.config),
            "tokenizer_weights_hash": weights_hash(tokenizer),  # resuming with another tokenizer is refused
            "objective": dataclasses.asdict(objective),
            **(run_config or {}),
        }
        # Label i of a class model means the data's classes[i] (image sub-folder or dataset class name); `export`
        # writes them into pipeline.json so that samples can be asked for and labelled by name.
        class_names = getattr(train_dataset, "classes", None)
        if not self.is_text and class_names is not None and len(class_names) == transformer.config.num_classes:
            run_config["class_names"] = list(class_names)
        # The mask's form and recomputation are set before the trainer copies (EMA) and wraps (DDP, compile) it.
        transformer.use_attention_mask(config.attention).use_activation_checkpointing(config.activation_checkpointing)
        self.last_held_out_loss: float | None = None  # the raw weights' newest held-out loss (for the end note)
        self.chance_noted = False  # the note for a held-out loss at chance is given once per invocation
        super().__init__({"model": transformer}, config, run_dir, train_dataset, eval_dataset, run_config, dist_info)
        if config.attention == "flex" and self.device.type in ("cpu", "mps"):
            # PyTorch's FlexAttention has a forward but no backward pass on these devices (compiled or not).
            raise ValueError(
                f"attention 'flex' trains on GPUs only: FlexAttention has no backward pass on {self.device.type}; "
                "use --attention dense here"
            )
        self.tokenizer.to(self.device)
        # The run keeps its own copy of the tokenizer (and a reference to the text encoder), so `export` can
        # write a complete pipeline.
        if self.dist.is_main:
            self.keep_tokenizer_copy()
        if text_encoder is not None:
            if self.dist.is_main:
                save_text_encoder_reference(self.run_dir / TEXT_ENCODER_DIR, text_encoder)
            self.captions = CachedTextEncoder(text_encoder.to(self.device))
            self.null_text = self.text_condition([""])
        distributed.barrier()

    def keep_tokenizer_copy(self) -> None:
        """Write the run's tokenizer copy, at the start and again whenever it is missing or not this tokenizer's
        weights (a damaged file would otherwise pass every resume and fail only at `export`)."""
        folder = self.run_dir / TOKENIZER_DIR
        if (folder / "model.safetensors").is_file():
            try:
                # building the module draws initial weights: the resumed run's random state must stay untouched
                with torch.random.fork_rng(devices=[]):
                    copy = load_component(MultiScaleVQVAE, folder)
                if weights_hash(copy) == weights_hash(self.tokenizer):
                    return
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
                logger.warning("the run's tokenizer copy in %s is unreadable (%s); writing it again", folder, err)
        save_component(self.tokenizer, folder)

    # ------------------------------------------------------------------------------ progressive
    def stage(self, step: int) -> int:
        """Finest scale index trained at ``step`` (the last scale when progressive training is off)."""
        obj, cfg = self.objective, self.config
        return progressive_stage(
            step,
            cfg.total_steps,
            cfg.warmup_steps,
            self.schedule.num_scales,
            obj.progressive,
            obj.progressive_first_stage,
        )

    def stage_start(self, step: int) -> int:
        """First step of the stage ``step`` is in (stages never decrease: binary search)."""
        target, lo, hi = self.stage(step), 0, step
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if self.stage(mid) < target else (lo, mid)
        return lo

    def newest_scale_weight(self, step: int) -> float:
        obj = self.objective
        if not obj.progressive:
            return 1.0
        ramp = obj.progressive_stage_warmup or self.config.total_steps / 300
        stage = self.stage(step)
        # As VAR's trainer: the step counts from 1 in its stage (prog_it), and neither the first stage (the LR
        # warm-up covers it) nor the last, full one ramps its newest scale in.
        settled = stage in (obj.progressive_first_stage, self.schedule.num_scales - 1)
        return progressive_newest_weight(step - self.stage_start(step) + 1, ramp, settled)

    # ----------------------------------------------------------------------------------- batches
    def text_condition(self, captions: list[str]) -> TextCondition:
        """Captions -> their encoder features on the training device (each distinct caption encoded once)."""
        encoding = self.captions.encode(list(captions)).to(self.device)
        return TextCondition(encoding.hidden, encoding.mask, encoding.pooled)

    @torch.no_grad()
    def prepare(self, batch: Any) -> tuple[torch.Tensor, ClassCondition | TextCondition, torch.Tensor]:
        """(images or tokens, labels or captions) -> targets (B, L) int64, the condition, teacher input
        (B, L - 1, code_dim); for the raster baseline the model input is the token map itself (B, L).
        A text condition carries the empty prompt's encoding for CFG dropout."""
        data, conditions = batch
        if self.is_text:
            if not isinstance(conditions, (list, tuple)):
                raise ValueError(
                    "a text model needs captioned data (--text-encoder), but the data holds class labels: tokenize "
                    "captioned images with `nextscale tokenize --data captions:PATH ...` and pass that folder to "
                    "--tokens, or leave out --text-encoder to train a class model"
                )
            text = self.text_condition(conditions)
            droppable = None
            if self.objective.caption_drop_min_chars:  # the official loader: only captions over 20 characters
                lengths = torch.tensor([len(caption) for caption in conditions], device=self.device)
                droppable = lengths >= self.objective.caption_drop_min_chars
            condition = TextCondition(text.hidden, text.mask, text.pooled, self.null_text, droppable)
        else:
            if isinstance(conditions, (list, tuple)) and self.is_raster:  # it has no text variant to point to
                raise ValueError(
                    "the raster baseline is class-conditional and needs labelled data (class sub-folders, a labelled "
                    "dataset or labelled tokens), got captions"
                )
            if isinstance(conditions, (list, tuple)):
                raise ValueError(
                    "a class model needs labelled data, got captions; to train a text model on them pass "
                    "--text-encoder default (the bundled all-MiniLM-L6-v2) or a local encoder folder"
                )
            condition = ClassCondition(conditions.long(), self.model_config.null_class_id)
        # The tokenizer runs in float32 (as the official trainer prepares inputs outside autocast).
        with torch.autocast(self.device.type, enabled=False):
            if data.is_floating_point():
                indices = self.tokenizer.encode(data.float())
                tokens = self.tokenizer.tokens_from_indices(indices)
            else:
                tokens = data.long()
                indices = self.tokenizer.indices_from_tokens(tokens)
            # the raster model embeds the tokens themselves; a next-scale model reads the teacher latents
            teacher = tokens if self.is_raster else self.tokenizer.teacher_forcing_input(indices)
        return tokens, condition, teacher

    @property
    def model_config(self) -> TransformerConfig | TextTransformerConfig:
        return self.raw_model.config

    def per_token_loss(self, logits: torch.Tensor, tokens: torch.Tensor, smoothing: float) -> torch.Tensor:
        """(B, l, V) logits, (B, l) targets -> (B, l) cross-entropy in float32."""
        batch, length, vocab = logits.shape
        return F.cross_entropy(
            logits.float().reshape(-1, vocab), tokens.reshape(-1), label_smoothing=smoothing, reduction="none"
        ).view(batch, length)

    def per_scale(self, values: torch.Tensor) -> torch.Tensor:
        """(B, L) per-token values -> (B, K) per-scale means."""
        return per_scale_mean(values, self.schedule)

    # ------------------------------------------------------------------------------------ steps
    def train_step(self, batch: Any) -> dict[str, Any]:
        tokens, condition, teacher = self.prepare(batch)
        if self.objective.train_sampler_head:
            return self.sampler_head_step(tokens, condition, teacher, self.model)
        if self.drop_start is not None:
            return self.train_step_dropping_tokens(tokens, condition, teacher)
        stage = self.stage(self.step)
        length = self.schedule.offsets[stage + 1]
        logits = self.model(condition, teacher if self.is_raster else teacher[:, : length - 1])  # (B, L', V)
        targets = tokens[:, :length]
        ce = self.per_token_loss(logits, targets, self.objective.label_smoothing)  # (B, L')
        weight = torch.ones(length, device=ce.device)
        if self.objective.progressive:
            weight[self.schedule.offsets[stage] : length] = self.newest_scale_weight(self.step)
        loss = (ce * weight).sum(1).div(length).mean()  # mean over tokens, then over the batch
        metrics: dict[str, Any] = {"loss": loss}
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).float()
            metrics["accuracy"] = correct.mean()
            if stage == self.schedule.num_scales - 1:
                metrics["scale_loss"] = self.per_scale(ce).mean(0)
                metrics["scale_accuracy"] = self.per_scale(correct).mean(0)
            if self.objective.progressive:
                metrics["stage"] = float(stage)
        return metrics

    def train_step_dropping_tokens(
        self, tokens: torch.Tensor, condition: TextCondition, teacher: torch.Tensor
    ) -> dict[str, Any]:
        """A text-model step on ``keep_tokens`` positions of every sequence (``token_dropping.py``): the loss is
        the mean cross-entropy over the kept tokens (official: per-token loss times 1 / kept), then over the batch.
        Per-scale metrics are means over each scale's kept tokens (NaN, no value, for a scale with none kept)."""
        length = self.schedule.total_tokens
        # One draw per micro-batch from the process's CPU RNG (checkpointed; the official code's global RNG).
        keep = kept_positions(length, self.drop_start, self.objective.keep_tokens)  # (N,) on the CPU
        logits = self.model(condition, teacher, keep=keep)  # (B, N, V)
        keep = keep.to(tokens.device)
        targets = tokens[:, keep]  # (B, N)
        ce = self.per_token_loss(logits, targets, self.objective.label_smoothing)  # (B, N)
        metrics: dict[str, Any] = {"loss": ce.mean(1).mean()}
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).float()
            levels = self.schedule.level_ids(keep.device)[keep]  # (N,)
            metrics["accuracy"] = correct.mean()
            metrics["scale_loss"] = per_scale_mean_of_kept(ce, levels, self.schedule.num_scales).mean(0)
            metrics["scale_accuracy"] = per_scale_mean_of_kept(correct, levels, self.schedule.num_scales).mean(0)
        return metrics

    def sampler_head_step(
        self, tokens: torch.Tensor, condition: TextCondition, teacher: torch.Tensor, model: nn.Module, generator=None
    ) -> dict[str, Any]:
        """A step of ``model``'s masked-sampler head (``sampler_head.py``): the frozen model's blocks run as at
        sampling (no drop-path; condition dropout stays, as the head also guides with the empty prompt), known
        positions drawn per sample, the loss the mean cross-entropy over the positions that are not known."""
        distributed.unwrap(model).blocks.eval()
        start = self.schedule.offsets[self.model_config.sampler_from_scale]
        targets = tokens[:, start:]  # (B, n)
        # The draw comes from the process's CPU RNG (checkpointed) unless a generator is given (evaluation).
        known = draw_known(*targets.shape, generator=generator).to(targets.device)
        codes = self.tokenizer.quantizer.lookup(targets) * known[..., None]
        logits = model(condition, teacher, sampler_codes=codes)  # (B, n, V)
        ce = self.per_token_loss(logits, targets, self.objective.label_smoothing)
        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).float()
        return {
            "loss": hidden_position_mean(ce, known),
            "accuracy": hidden_position_mean(correct, known).detach(),
            "known": known.float().mean(),
        }

    def eval_step(self, batch: Any, model: nn.Module) -> dict[str, torch.Tensor]:
        """Per sample of ``model`` (the raw or the EMA weights): mean test loss (B,), and per scale the test loss
        and token error (B, K) (``evaluation.held_out``, shared with ``nextscale evaluate --loss``); always on full
        sequences, also when training drops tokens. Training the masked-sampler head: its loss and accuracy on the
        positions not known, with the known ones drawn alike at every evaluation."""
        tokens, condition, teacher = self.prepare(batch)
        if self.objective.train_sampler_head:
            metrics = self.sampler_head_step(tokens, condition, teacher, model, torch.Generator().manual_seed(0))
            batch_size = tokens.shape[0]
            return {name: value.detach().expand(batch_size) for name, value in metrics.items()}
        return held_out_metrics(model(condition, teacher), tokens, self.schedule)

    def run_evaluation(self) -> dict[str, float]:
        """The base evaluation; past the warm-up, a raw held-out loss still at chance (ln vocab) gets one note saying
        the lr may be too low (the raw weights': the EMA's lag behind and sit at chance longer). The last step is
        left to the end-of-run note (``learning_rate_notes.chance_note``)."""
        metrics = super().run_evaluation()
        loss = metrics.get("loss")
        if not isinstance(loss, float):
            return metrics
        self.last_held_out_loss = loss
        config = self.config
        if not self.chance_noted and config.warmup_steps <= self.step < config.total_steps:
            note = chance_note(self.step, self.model_config.vocab_size, config.peak_lr, {"held-out": loss})
            if note:
                distributed.get_logger(__name__).warning(note)
                self.chance_noted = True
        return metrics

    def preview_prompts(self) -> list[str]:
        """Prompts of text previews: the objective's, or the first training captions."""
        if self.objective.preview_prompts:
            return list(self.objective.preview_prompts)
        count = min(PREVIEW_PROMPTS, len(self.train_dataset))
        return [str(self.train_dataset[index][1]) for index in range(count)]

    def preview(self, step: int) -> None:
        """Samples of the EMA (or raw) weights with a fixed seed: one per class (up to 16), or one per preview
        prompt (the grid is labelled with the prompts)."""
        generator = torch.Generator(self.device).manual_seed(self.objective.preview_seed)
        if self.is_text:
            prompts = self.preview_prompts()
            text = self.text_condition(prompts)
            condition = TextCondition(text.hidden, text.mask, text.pooled, negative=self.null_text)
            labels = [prompt_label(prompt) for prompt in prompts]  # a long caption would widen every cell
        else:
            config = self.raw_model.config
            num = min(16, config.num_classes)
            condition = ClassCondition(torch.arange(num, device=self.device), config.null_class_id)
            labels = condition.labels.tolist()
        config = SamplingConfig(cfg=self.objective.preview_cfg, masked_sampling=self.objective.train_sampler_head)
        with self.preview_model() as transformer:  # no drop-path while sampling
            sampler = (RasterSampler if self.is_raster else ScaleSampler)(self.tokenizer, transformer)
            out = sampler.sample(condition, config=config, generator=generator)
        images = sampler.decode(out.f_hat).mul(2).sub(1)  # [0, 1] -> [-1, 1]
        save_grid(
            images.float().cpu(),
            self.run_dir / "previews" / f"step-{step:08d}.png",
            nrow=min(len(labels), 8 if not self.is_text else 4),
            labels=labels,
        )
