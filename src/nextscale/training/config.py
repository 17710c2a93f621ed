"""Run configuration of the training loop: optimisation and bookkeeping settings, seeding, run identity.

``TrainConfig`` holds what every trainer shares (steps, batch, LR schedule, AdamW, precision, cadences);
model configs and loss settings live in their own dataclasses. ``config_differences`` decides whether a
run directory may be resumed with the current settings: only the fields in ``RESUMABLE_CHANGES``
(cadences and machinery, not the maths) may change.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Any

from nextscale.training.schedules import check_lr_schedule, peak_lr, warmup_steps_for

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Forms of the transformer's training mask (``transformer.block_mask.ATTENTION_MASKS``, repeated here so that
# the CLI can read this module without loading torch).
ATTENTION_MASKS = ("dense", "flex")
# Fields that may change between a run and its resumption (cadence and machinery, not the maths).
RESUMABLE_CHANGES = frozenset(
    {
        "log_every",
        "eval_every",
        "eval_samples",
        "preview_every",
        "checkpoint_every",
        "keep_checkpoints",
        "num_workers",
        "progress",
        "compile",
        "strategy",
        "grad_accum",  # the same batch cut into other micro-steps: the trainer checks it trains on the same samples
        "precision",
        "attention",  # the kernel of the same mask: the same maths
        "activation_checkpointing",  # recomputed activations: the same numbers, less memory
        "held_out",  # the held-out data: it changes what the held-out curve measures, not training (a warning says so)
        "init_sampling",  # the starting model's recommended sampling (a sampler-head run's export keeps it)
    }
)
# Run-config fields that name files or folders: two spellings of one place (relative or absolute, a trailing "/",
# another working directory) are the same setting, so the same command resumes from anywhere.
PATH_FIELDS = frozenset({"data", "tokens", "tokenizer_source", "init_from", "text_encoder", "held_out"})
# Fields added after runs were made, with the value every older run (whose config.json lacks them) trained with:
# resuming such a run under that value is the same run.
ADDED_FIELDS = {
    "keep_tokens": None,
    "drop_tokens_from_scale": None,
    "caption_drop_min_chars": 0,
    "train_sampler_head": False,
    "sampler_head": False,  # STAR's masked-sampler head (TextTransformerConfig)
    "sampler_from_scale": 9,
    "sampler_depth": 3,
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping of one run (the model configs live in their own dataclasses).

    Attributes:
        total_steps: optimizer steps of the whole run.
        batch_size: global batch per optimizer step (all ranks and accumulation micro-steps together).
        grad_accum: micro-batches per optimizer step.
        base_lr: learning rate per 256 samples (VAR ``tblr``); peak = base_lr * batch_size / 256.
        lr: explicit peak learning rate; None applies the base_lr rule.
        lr_schedule: "lin0" (VAR default), "cos", "constant" or "lin<T>" (``schedules.lr_factor``).
        warmup: warm-up steps (>= 1) or fraction of total_steps (< 1); VAR uses 2 %.
        warmup_start: LR factor at step 0 (VAR ``wp0``).
        end_lr_factor: LR factor at the last step (VAR ``wpe``).
        weight_decay: start value (VAR ``twd``), applied by the decay rule of optim.py.
        weight_decay_end: end value of the cosine (None: constant).
        betas, eps: AdamW.
        grad_clip: max global gradient norm; None turns clipping off.
        precision: "fp32", "bf16", "fp16" (with GradScaler) or "auto" (bf16 on Ampere or later GPUs, fp16 on
            older ones, fp32 on a CPU).
        attention: form of the transformer's block-causal training mask: "dense" (an L x L bias for SDPA) or
            "flex" (a FlexAttention block mask, compiled on CUDA; no attention dropout, no CPU training).
        activation_checkpointing: recompute each transformer block's activations in the backward pass instead
            of keeping them (about a third more compute, a fraction of the activation memory, the same numbers).
        ema_decay: EMA of the weights; None turns it off (export then writes the raw weights).
        seed: seeds model init (before the trainer) and, offset by rank, every process's RNGs.
        log_every / eval_every / preview_every / checkpoint_every: cadences in steps (None: off;
            a checkpoint is always written at the end).
        eval_samples: held-out samples per evaluation.
        keep_checkpoints: newest checkpoints kept (0 keeps all).
        num_workers: DataLoader worker processes (0: load in the training process).
        strategy: "ddp", "fsdp" or "none"; compile: wrap in torch.compile.
        progress: show a tqdm bar on rank 0.
    """

    total_steps: int = 1000
    batch_size: int = 64
    grad_accum: int = 1
    base_lr: float = 1e-4
    lr: float | None = None
    lr_schedule: str = "lin0"
    warmup: float = 0.02
    warmup_start: float = 0.005
    end_lr_factor: float = 0.01
    weight_decay: float = 0.05
    weight_decay_end: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 2.0
    precision: str = "auto"
    attention: str = "dense"
    activation_checkpointing: bool = False
    ema_decay: float | None = 0.9999
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None
    eval_samples: int = 512
    preview_every: int | None = None
    checkpoint_every: int | None = 500
    keep_checkpoints: int = 3
    num_workers: int = 0
    strategy: str = "ddp"
    compile: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.total_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("total_steps, batch_size and grad_accum must be >= 1")
        check_lr_schedule(self.lr_schedule)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.attention not in ATTENTION_MASKS:
            raise ValueError(f"attention must be one of {ATTENTION_MASKS}, got {self.attention!r}")
        if self.warmup_steps > self.total_steps:  # checked here: the schedule would refuse it at the first step
            raise ValueError(
                f"--warmup {self.warmup:g} is {self.warmup_steps} warm-up steps, more than the run's "
                f"{self.total_steps}; give fewer steps, or a fraction of the run below 1 (VAR: 0.02)"
            )
        if not self.peak_lr > 0:  # a zero or negative rate trains nothing, or climbs the loss
            raise ValueError(
                f"the peak learning rate must be > 0 (--lr, or --base-lr per 256 samples), got {self.peak_lr:g}"
            )
        for flag, value in (("--end-lr-factor", self.end_lr_factor), ("--weight-decay", self.weight_decay)):
            if value < 0:  # a negative factor flips the step's sign; a negative decay inflates the weights
                raise ValueError(f"{flag} must be >= 0, got {value:g}")
        if self.weight_decay_end is not None and self.weight_decay_end < 0:
            raise ValueError(f"--weight-decay-end must be >= 0, got {self.weight_decay_end:g}")
        if self.grad_clip is not None and self.grad_clip <= 0:  # clipping to 0 would zero every gradient
            raise ValueError(f"--grad-clip must be > 0 (or 'none': no clipping), got {self.grad_clip:g}")
        for name in ("log_every", "eval_every", "preview_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None (off), got {value}")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else peak_lr(self.base_lr, self.batch_size)

    @property
    def warmup_steps(self) -> int:
        return warmup_steps_for(self.total_steps, self.warmup)


def seed_everything(seed: int) -> None:
    """Seed torch, NumPy and Python (call with the same seed on every rank before building models)."""
    import numpy as np  # imported here: the CLI reads this module's defaults without loading torch
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def normalise_config(values: Any) -> Any:
    return json.loads(json.dumps(values))  # tuples -> lists, keys -> str: compare what config.json holds


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two run configs, ignoring RESUMABLE_CHANGES."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES:
            continue
        a, b = saved.get(key, ADDED_FIELDS.get(key, "<absent>")), current.get(key, "<absent>")
        if key == "class_names" and (a in (None, "<absent>") or b in (None, "<absent>")):
            continue  # recorded since runs export them: older runs lack them, and folders without names give none
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, f"{prefix}{key}."))
        elif a != b and not (key in PATH_FIELDS and same_place(a, b)):
            out.append(f"{prefix}{key}: {a!r} in the run, {b!r} now")
    return out


def same_place(saved: object, current: object) -> bool:
    """Whether two values of a path field name one existing file or folder: ``tok``, ``./tok/`` and ``/work/tok``
    from /work, or ``captions:data`` and ``captions:/work/data`` (the same ``kind:`` prefix). Values that name nothing
    on disk (a dataset name such as ``fashion-mnist``) are only equal as strings."""
    if not (isinstance(saved, str) and isinstance(current, str)):
        return False
    (saved_kind, saved_path), (current_kind, current_path) = _split_source(saved), _split_source(current)
    if saved_kind != current_kind:
        return False
    try:
        return os.path.samefile(saved_path, current_path)
    except (OSError, ValueError):  # one of them is no existing path
        return False


def _split_source(value: str) -> tuple[str, str]:
    """``"captions:DIR"`` -> ("captions:", "DIR"); a plain path -> ("", path)."""
    kind, separator, rest = value.partition(":")
    if separator and kind.replace("-", "").replace("_", "").isalnum() and rest:
        return kind + separator, rest
    return "", value


@dataclass(frozen=True)
class TokenizerLossConfig:
    """Loss weights and the adversarial set-up of tokenizer training.

    Attributes:
        l1_weight, l2_weight: pixel losses.
        perceptual: "ssim" (default, no network), "lpips" (local files below) or "none".
        perceptual_weight: weight of the perceptual term.
        lpips_backbone, lpips_heads: local LPIPS files (see tokenizer.losses.LPIPS.from_files).
        quant_weight: weight of the quantizer loss.
        disc_start: step at which the adversarial loss starts; None trains without a discriminator.
        disc_weight: factor on the adaptive adversarial weight (VQGAN: 0.8; 0.5 here).
        disc_lr: discriminator peak lr; None uses the tokenizer's.
        disc_channels, disc_layers, disc_norm: PatchGAN shape (see DiscriminatorConfig).
        max_adaptive_weight: clamp of the adaptive weight.
        dead_code_every: restart dead codes every N steps; None: never.
        dead_code_min_hits: a code is dead when its usage EMA, summed over scales, is below this.
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    perceptual: str = "ssim"
    perceptual_weight: float = 1.0
    lpips_backbone: str | None = None
    lpips_heads: str | None = None
    quant_weight: float = 1.0
    disc_start: int | None = None
    disc_weight: float = 0.5
    disc_lr: float | None = None
    disc_channels: int = 64
    disc_layers: int = 3
    disc_norm: str = "group"
    max_adaptive_weight: float = 1e4
    dead_code_every: int | None = None
    dead_code_min_hits: float = 0.01


@dataclass(frozen=True)
class TransformerObjective:
    """Loss, progressive-training and initialisation settings of transformer training.

    Attributes:
        label_smoothing: cross-entropy label smoothing (VAR ``ls``, default 0).
        progressive: fraction of training during which scales are added (VAR ``pg``; 0 = off).
        progressive_first_stage: finest scale index trained first (VAR ``pg0`` = 4).
        progressive_stage_warmup: steps over which a new scale's loss ramps in; 0 = total_steps / 300
            (VAR ``pgwp`` = ep / 300 epochs).
        init_adaln, init_adaln_gamma, init_head, init_std: ``ScaleTransformer.init_weights`` knobs for a
            fresh model (VAR trains d16/d20 with gamma 1e-3, d24 1e-4, d30 1e-5).
        preview_cfg: CFG strength of preview samples.
        preview_seed: seed of preview samples (the same images at every preview).
        preview_prompts: prompts of text-model previews (default: the first training captions).
        keep_tokens: text models: train on this many tokens per sequence, the rest of the positions from
            ``drop_tokens_from_scale`` on dropped at random each micro-batch (official ``drop_scale_length``,
            8800 of 9451 at 1024 px; ``token_dropping.py``); None trains on full sequences. Held-out evaluation
            always uses full sequences.
        drop_tokens_from_scale: the first scale whose tokens may be dropped; None means the last scale (the
            official 1024 px stage's 64 x 64 map).
        caption_drop_min_chars: text models: only captions of at least this many characters may be replaced by
            the empty prompt in condition dropout; 0 means any caption (the official STAR loader: 21, i.e.
            longer than 20). The dropout draw is the same either way.
        train_sampler_head: text models with a masked-sampler head: train only the head (the main model frozen,
            its features taken without drop-path), the STAR sampler stage (``training/sampler_head.py``).
    """

    label_smoothing: float = 0.0
    progressive: float = 0.0
    progressive_first_stage: int = 4
    progressive_stage_warmup: float = 0.0
    init_adaln: float = 0.5
    init_adaln_gamma: float = 1e-3
    init_head: float = 0.02
    init_std: float | None = None
    preview_cfg: float = 1.5
    preview_seed: int = 0
    preview_prompts: tuple[str, ...] = ()
    keep_tokens: int | None = None
    drop_tokens_from_scale: int | None = None
    caption_drop_min_chars: int = 0
    train_sampler_head: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing <= 1.0:  # else the first step fails deep in F.cross_entropy
            raise ValueError(f"--label-smoothing must be in [0, 1] (VAR: 0), got {self.label_smoothing}")
        if not 0.0 <= self.progressive <= 1.0:  # above 1 the last scales would never be trained
            raise ValueError(
                f"--progressive is the fraction of training that adds scales, in [0, 1] (0: off), got "
                f"{self.progressive}"
            )
        if self.init_std is not None and not 0.0 < self.init_std < float("inf"):  # VAR's -1 "auto" is None here
            raise ValueError(f"--init-std must be > 0 (or left out: sqrt(1 / (3 width)) as VAR), got {self.init_std}")
        if self.keep_tokens is not None and self.keep_tokens < 1:
            raise ValueError(f"--keep-tokens must be >= 1 (or left out: full sequences), got {self.keep_tokens}")
        if self.drop_tokens_from_scale is not None and self.keep_tokens is None:
            raise ValueError("--drop-tokens-from-scale says where token dropping starts; give --keep-tokens N too")
        if self.keep_tokens is not None and self.progressive:
            raise ValueError(
                "token dropping (--keep-tokens) trains full sequences minus dropped tokens; it does not combine "
                "with progressive training: use --progressive 0"
            )
        if self.train_sampler_head and (self.keep_tokens is not None or self.progressive):
            raise ValueError(
                "--train-sampler-head trains the head on the frozen model's full sequences: leave out --keep-tokens "
                "and --progressive"
            )
        if self.caption_drop_min_chars < 0:
            raise ValueError(f"--caption-drop-min-chars must be >= 0, got {self.caption_drop_min_chars}")
