"""Train a multi-scale VQ-VAE tokenizer (VAR stage 1); re-running the same command resumes.

Examples:
    # Fashion-MNIST demo tokenizer (32 px, 1 channel; 2,500 steps at batch 64, 43 min on a shared 2-core CPU):
    # held-out PSNR of the full reconstruction 22.1 dB at step 2500; see configs/fashion_mnist_tokenizer.json
    nextscale train-tokenizer --config configs/fashion_mnist_tokenizer.json --run-dir runs/fm-tokenizer

    # tiny smoke run (16 px, about 5 s on a CPU): recon_loss falls by more than 15 % in 30 steps
    nextscale train-tokenizer --config configs/tiny_tokenizer.json --run-dir runs/tiny-tok

    # your own folder of class sub-folders, RGB at 32 px (scales 1,2,4,8); README "Train on your own images"
    nextscale train-tokenizer --config configs/own_images_tokenizer.json --data data/shapes --run-dir runs/shapes-tok

    # fine-tune the released VAR tokenizer on your images (GPU; torchrun for several)
    torchrun --nproc_per_node=8 -m nextscale train-tokenizer --init-from vae_ch160v4096z32.pth \\
        --data /data/my-images --run-dir runs/my-tok --steps 20000 --batch-size 64 --disc-start 0

Losses: L1 + perceptual (multi-scale SSIM by default; LPIPS from local files with --perceptual lpips)
+ the quantizer loss + a PatchGAN hinge loss from --disc-start on (off by default), with VQGAN's
adaptive weight. Logs per-scale code usage (and warns when the finest scale uses under 10 % of the
codebook); the held-out evaluation reports MSE/PSNR per scale, of the raw weights ('eval' in
metrics.jsonl) and of the EMA weights that export writes ('eval_ema').
At start it logs the data (images, classes, file sizes, where the held-out images come from; a folder
without val/ gives up 5 % of each class, at least one image, seed 0) and the image size and scale
schedule trained (--resolution PX picks sides doubling from 1 to PX / downsampling, e.g. 32 -> 1,2,4,8).
--crop-margin R sets how much of each image the crops keep (the shorter side is resized to R times the image size
before the crop; default 1.125, VAR's; 1.0 keeps the whole shorter side); config.json records it, and a resume keeps it.
Export the EMA weights with `nextscale export --run RUN --out DIR`.
Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and says so; a second Ctrl-C quits at once without
saving; re-running the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.data_report import add_resolution_argument
from nextscale.training.config import TokenizerLossConfig, TrainConfig
from nextscale.training.crop_margin import add_crop_margin_argument
from nextscale.training.data_specs import add_bad_images_argument
from nextscale.training.options import (
    PRECEDENCE_HELP,
    add_run_arguments,
    chosen_options,
    given_options,
    int_tuple,
    optional_int,
    record_given_options,
)

# Tokenizer defaults: VQGAN-style Adam (betas 0.5/0.9, no weight decay, constant lr after a short warm-up).
DEFAULTS = TrainConfig(
    batch_size=64,
    lr=1e-4,
    lr_schedule="constant",
    warmup=0.01,
    weight_decay=0.0,
    betas=(0.5, 0.9),
    grad_clip=None,
    ema_decay=0.999,
    eval_every=1000,
    preview_every=1000,
)
LOSSES = TokenizerLossConfig()
SIZE_FLAGS = (
    "vocab_size",
    "code_dim",
    "base_channels",
    "channel_multipliers",
    "num_res_blocks",
    "in_channels",
    "beta",
    "num_phi",
    "scale_sides",
    "lookup",
)
DATA_FLAGS = ("data",)
DATA_DEPENDENT = ("in_channels",)  # typed --data drops the run file's channels; they follow from the data
# A typed --init-from fixes the shape: the file's shape flags describe its fresh model, not this one.
# A typed --resolution replaces the file's --scale-sides and the other way round: both set the schedule.
RUN_FILE_SOURCES = (
    (DATA_FLAGS, DATA_DEPENDENT),
    (("init_from",), ("preset", "resolution", *SIZE_FLAGS)),
    (("resolution",), ("scale_sides",)),
    (("scale_sides",), ("resolution",)),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    record_given_options(parser)
    parser.epilog = PRECEDENCE_HELP.format(data_flags="--data", data_dependent="--in-channels") + (
        "\nA typed --init-from likewise drops the run file's --preset and shape options: its weights fix the shape."
    )
    parser.add_argument(
        "--data", help="fashion-mnist[:DIR], an image folder (DIR/train + DIR/val, or DIR), or captions:PATH"
    )
    parser.add_argument("--init-from", help="start from a tokenizer folder, pipeline folder, run, or official .pth")
    add_bad_images_argument(parser)
    add_crop_margin_argument(parser)
    group = parser.add_argument_group("tokenizer shape (default: the preset's)")
    group.add_argument("--preset", default="var-d16", help="named preset: tiny, var-d16, ... (default: var-d16)")
    group.add_argument("--vocab-size", type=int, help="codebook size V")
    group.add_argument("--code-dim", type=int, help="code channels")
    group.add_argument("--base-channels", type=int, help="CNN width of the first level (multiple of 32)")
    group.add_argument("--channel-multipliers", type=int_tuple, help="per-level width factors, e.g. 1,2,2")
    group.add_argument("--num-res-blocks", type=int, help="ResNet blocks per encoder level")
    group.add_argument(
        "--in-channels",
        type=int,
        help="image channels (default: read from the files: 1 when all are grayscale, else 3; captioned data: the "
        "preset's)",
    )
    group.add_argument("--beta", type=float, help="commitment weight")
    group.add_argument("--num-phi", type=int, help="shared Phi convs (0: one per scale)")
    group.add_argument("--scale-sides", type=int_tuple, help="token-map sides, e.g. 1,2,3,4,6,8")
    add_resolution_argument(group, "preset")
    group.add_argument("--lookup", choices=("l2", "cosine"), help="codebook lookup")
    group = parser.add_argument_group("losses")
    group.add_argument(
        "--l1-weight", type=float, default=LOSSES.l1_weight, help="L1 pixel loss weight (default: %(default)s)"
    )
    group.add_argument(
        "--l2-weight", type=float, default=LOSSES.l2_weight, help="L2 pixel loss weight (default: %(default)s)"
    )
    group.add_argument(
        "--perceptual",
        choices=("ssim", "lpips", "none"),
        default=LOSSES.perceptual,
        help="perceptual term: multi-scale SSIM (default, no network), LPIPS (local files) or none",
    )
    group.add_argument(
        "--perceptual-weight",
        type=float,
        default=LOSSES.perceptual_weight,
        help="its weight (default: %(default)s; not with --perceptual none)",
    )
    group.add_argument("--lpips-backbone", help="local VGG-16 .safetensors or TorchScript feature extractor")
    group.add_argument("--lpips-heads", help="local LPIPS heads .safetensors (lin0..lin4)")
    group.add_argument(
        "--quant-weight", type=float, default=LOSSES.quant_weight, help="quantizer loss weight (default: %(default)s)"
    )
    group.add_argument(
        "--disc-start",
        type=optional_int,
        default=LOSSES.disc_start,
        help="step at which the PatchGAN loss starts ('none': no discriminator, the default)",
    )
    group.add_argument(
        "--disc-weight",
        type=float,
        default=LOSSES.disc_weight,
        help="factor on the adaptive adversarial weight (default: %(default)s)",
    )
    group.add_argument("--disc-lr", type=float, default=None, help="discriminator lr (default: the tokenizer's)")
    group.add_argument(
        "--disc-channels", type=int, default=LOSSES.disc_channels, help="PatchGAN base width (default: %(default)s)"
    )
    group.add_argument(
        "--disc-layers", type=int, default=LOSSES.disc_layers, help="PatchGAN stride-2 layers (default: %(default)s)"
    )
    group.add_argument(
        "--disc-norm", choices=("group", "none"), default=LOSSES.disc_norm, help="PatchGAN norm (default: %(default)s)"
    )
    group.add_argument(
        "--dead-code-every",
        type=optional_int,
        default=LOSSES.dead_code_every,
        help="restart unused codes every N steps ('none': never)",
    )
    group.add_argument(
        "--dead-code-min-hits",
        type=float,
        default=LOSSES.dead_code_min_hits,
        help="usage EMA (summed over scales) below which a code is dead (default: %(default)s)",
    )
    add_run_arguments(parser, DEFAULTS)


def build_tokenizer(args: argparse.Namespace):
    """The tokenizer to train: --init-from weights, or a fresh one from the preset plus size flags."""
    import dataclasses

    from nextscale.cli.data_report import scale_sides_for
    from nextscale.presets import get_preset
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.training.export import load_tokenizer, with_scale_sides

    overrides = {name: getattr(args, name) for name in SIZE_FLAGS if getattr(args, name) is not None}
    if args.init_from:
        tokenizer = load_tokenizer(args.init_from, overrides.get("scale_sides"))
        given = {k: v for k, v in overrides.items() if k != "scale_sides"}
        if given:
            raise ValueError(f"--init-from fixes the tokenizer's shape; drop {sorted(given)}")
        sides = scale_sides_for(args.resolution, args.scale_sides, tokenizer.config.downsample_factor)
        if sides is not None and sides != tuple(tokenizer.config.scale_sides):
            tokenizer = with_scale_sides(tokenizer, sides)
        return tokenizer.train()
    config, _ = get_preset(args.preset)
    config = dataclasses.replace(config, **overrides)
    sides = scale_sides_for(args.resolution, args.scale_sides, config.downsample_factor)
    if sides is not None:
        config = dataclasses.replace(config, scale_sides=sides)
    return MultiScaleVQVAE(config)


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.run_path_checks import check_run_dir_kind
    from nextscale.training.crop_margin import check_crop_margin
    from nextscale.training.data_specs import data_channels
    from nextscale.training.export import check_not_run_checkpoint
    from nextscale.training.options import apply_run_file, train_in_run_dir

    apply_run_file(args, RUN_FILE_SOURCES)
    if not args.run_dir or not args.data:
        raise ValueError("--run-dir and --data are required (or give them in the --config file)")
    check_data_from_config(args)
    check_run_dir_kind(args.run_dir, "tokenizer")
    check_not_run_checkpoint("--init-from", args.init_from)
    check_perceptual_weight(args)
    check_switched_off_options(args)
    if args.in_channels is None and not args.init_from:
        args.in_channels = data_channels(args.data)
    check_crop_margin(args)  # a margin the data or the resumed run cannot take leaves no run folder behind
    train_in_run_dir(args, _train)
    return 0


def check_data_from_config(args: argparse.Namespace) -> None:
    """Refuse a --data folder that the --config file named and that does not exist here, saying where it came from:
    a user who ran the README's own-images recipe without --data meets the shapes example's folder otherwise."""
    from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX
    from nextscale.training.options import given_options

    spec = args.data
    if "data" in given_options(args) or spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        return
    if not Path(spec.removeprefix(CAPTIONS_PREFIX)).exists():
        raise FileNotFoundError(
            f"data folder {spec} (from {args.config}) does not exist; pass --data DIR naming your folder of class "
            "sub-folders (or make the config's example data first)"
        )


def check_perceptual_weight(args: argparse.Namespace) -> None:
    """Refuse a --perceptual-weight that --perceptual none would ignore (the loss config cannot tell a chosen weight
    from the default, the parser can). A typed --perceptual none overrides the run file's weight, as the command line
    overrides the file."""
    given, chosen = given_options(args), chosen_options(args)
    overridden = "perceptual" in given and "perceptual_weight" not in given
    if args.perceptual == "none" and "perceptual_weight" in chosen and not overridden:
        raise ValueError(
            "--perceptual-weight weighs the perceptual term, which --perceptual none turns off: drop "
            "--perceptual-weight, or choose --perceptual ssim or lpips"
        )


# Options that matter only while their feature is on: (switch dest, how to turn it on, the feature's option dests).
SWITCHED_OPTIONS = (
    ("disc_start", "--disc-start STEP", ("disc_weight", "disc_lr", "disc_channels", "disc_layers", "disc_norm")),
    ("dead_code_every", "--dead-code-every N", ("dead_code_min_hits",)),
)


def check_switched_off_options(args: argparse.Namespace) -> None:
    """Refuse discriminator and dead-code options that their switched-off feature would ignore (``--disc-weight 0.8``
    without ``--disc-start`` trains no GAN at all). As for --perceptual-weight, a typed 'none' overrides the run file's
    options of the feature it turns off."""
    given, chosen = given_options(args), chosen_options(args)
    for switch, turn_on, options in SWITCHED_OPTIONS:
        if getattr(args, switch) is not None:
            continue
        overridden = switch in given
        ignored = [name for name in options if name in given or (name in chosen and not overridden)]
        if ignored:
            flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
            off = "--" + switch.replace("_", "-") + " none"
            raise ValueError(f"{flags} would be ignored with {off} (the default): add {turn_on} or drop them")


def _train(args: argparse.Namespace, dist_info) -> None:
    from nextscale import distributed
    from nextscale.cli.data_report import log_data_report, schedule_source
    from nextscale.training.config import seed_everything
    from nextscale.training.crop_margin import run_crop_margin
    from nextscale.training.data_specs import run_datasets
    from nextscale.training.learning_rate_notes import peak_lr_line
    from nextscale.training.options import fit_and_report, train_config_from_args
    from nextscale.training.tokenizer_trainer import TokenizerTrainer

    seed_everything(args.seed)  # identical initial weights on every rank
    tokenizer = build_tokenizer(args)
    config = tokenizer.config
    margin_record = run_crop_margin(args)  # a resume keeps the run's margin
    train_set, eval_set, split_record = run_datasets(args, config.image_size, config.in_channels)
    default_source = f"the tokenizer {args.init_from}" if args.init_from else f"preset {args.preset}"
    log_data_report(config, schedule_source(args, default_source), train_set, eval_set, args.data, held_out_flags="")
    losses = TokenizerLossConfig(
        l1_weight=args.l1_weight,
        l2_weight=args.l2_weight,
        perceptual=args.perceptual,
        perceptual_weight=args.perceptual_weight,
        lpips_backbone=args.lpips_backbone,
        lpips_heads=args.lpips_heads,
        quant_weight=args.quant_weight,
        disc_start=args.disc_start,
        disc_weight=args.disc_weight,
        disc_lr=args.disc_lr,
        disc_channels=args.disc_channels,
        disc_layers=args.disc_layers,
        disc_norm=args.disc_norm,
        dead_code_every=args.dead_code_every,
        dead_code_min_hits=args.dead_code_min_hits,
    )
    train_config = train_config_from_args(args, len(train_set))
    distributed.get_logger("nextscale.train_tokenizer").info("%s", peak_lr_line(train_config, "tokenizer"))
    trainer = TokenizerTrainer(
        tokenizer,
        losses,
        train_config,
        args.run_dir,
        train_set,
        eval_set,
        run_config={"data": args.data, "init_from": args.init_from, **split_record, **margin_record},
        dist_info=dist_info,
    )
    fit_and_report(trainer, args.max_steps, (train_set, eval_set), "tokenizer")
