"""Train the next-scale transformer (VAR stage 2) on a frozen tokenizer; re-running the same command resumes.

Examples:
    # the official VAR-d16 recipe (ImageNet 256 px, 8+ GPUs), see configs/var_d16_imagenet.json:
    # 200 epochs, batch 768, tblr 1e-4 (peak 3e-4), lin0 schedule, wpe 0.1; official FID-50K 3.55 (cfg 1.5)
    torchrun --nproc_per_node=8 -m nextscale train --config configs/var_d16_imagenet.json \\
        --data /data/imagenet --tokenizer vae_ch160v4096z32.pth --run-dir runs/var-d16

    # Fashion-MNIST demo model on a 2-core CPU, see configs/fashion_mnist_transformer.json
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --out tokens/fm-train
    nextscale train --config configs/fashion_mnist_transformer.json --tokenizer runs/fm-tokenizer \\
        --tokens tokens/fm-train --run-dir runs/fm-var

Inputs: --data images (encoded on the fly) or --tokens shards from `nextscale tokenize` (cheaper);
the tokenizer comes from --tokenizer (component or pipeline folder, tokenizer run, or official .pth).
Loss: per-token cross-entropy averaged over tokens and the batch; per-scale loss and accuracy logged,
per-scale held-out loss and token error evaluated. Export with `nextscale export --run RUN --out DIR`.
"""

from __future__ import annotations

import argparse

from nextscale.training.config import TrainConfig, TransformerObjective
from nextscale.training.options import add_run_arguments, int_tuple, optional_float

# The official VAR recipe (VAR_REFERENCE.md section 5): AdamW (0.9, 0.95), wd 0.05 by rule, tblr 1e-4,
# lin0 with 2 % warm-up, wpe 0.01, clip 2.0, batch 768.
DEFAULTS = TrainConfig(
    batch_size=768,
    base_lr=1e-4,
    lr_schedule="lin0",
    warmup=0.02,
    end_lr_factor=0.01,
    weight_decay=0.05,
    betas=(0.9, 0.95),
    grad_clip=2.0,
    ema_decay=0.9999,
    eval_every=5000,
    preview_every=5000,
    checkpoint_every=5000,
)
OBJECTIVE = TransformerObjective()
MODEL_FLAGS = ("num_classes", "embed_dim", "num_heads", "drop_path_rate", "cond_drop_rate", "shared_adaln")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", help="tokenizer: component/pipeline folder, tokenizer run dir, or official .pth")
    parser.add_argument("--data", help="fashion-mnist[:DIR] or an image folder (used for held-out eval with --tokens)")
    parser.add_argument("--tokens", help="token folder from `nextscale tokenize` (training reads it, not --data)")
    parser.add_argument("--eval-tokens", help="held-out token folder (default: the --data held-out split, if any)")
    parser.add_argument("--scale-sides", type=int_tuple, help="scale sides for an official .pth tokenizer")
    group = parser.add_argument_group("transformer shape (depth is the single dial)")
    group.add_argument("--preset", default="var-d16", help="named preset for the shape (default: var-d16)")
    group.add_argument("--depth", type=int, help="blocks; width 64 d, d heads, drop-path 0.1 d / 24")
    group.add_argument("--num-classes", type=int, help="class count (default: the preset's)")
    group.add_argument("--embed-dim", type=int, help="override the width")
    group.add_argument("--num-heads", type=int, help="override the head count")
    group.add_argument("--drop-path-rate", type=float, help="override the stochastic-depth rate")
    group.add_argument("--cond-drop-rate", type=float, help="label dropout for CFG (default 0.1)")
    group.add_argument("--shared-adaln", action="store_true", default=None, help="shared AdaLN (VAR d36)")
    group = parser.add_argument_group("objective")
    group.add_argument("--label-smoothing", type=float, default=OBJECTIVE.label_smoothing, help="CE label smoothing")
    group.add_argument(
        "--progressive",
        type=float,
        default=OBJECTIVE.progressive,
        help="fraction of training that adds scales progressively (VAR pg; 0 = off)",
    )
    group.add_argument(
        "--progressive-first-stage",
        type=int,
        default=OBJECTIVE.progressive_first_stage,
        help="first trained scale index (VAR pg0)",
    )
    group.add_argument(
        "--progressive-stage-warmup",
        type=float,
        default=OBJECTIVE.progressive_stage_warmup,
        help="steps over which a new scale's loss ramps in (0: total / 300)",
    )
    group.add_argument("--init-adaln", type=float, default=OBJECTIVE.init_adaln, help="AdaLN scale/shift init")
    group.add_argument("--init-adaln-gamma", type=float, default=OBJECTIVE.init_adaln_gamma, help="AdaLN gate init")
    group.add_argument("--init-head", type=float, default=OBJECTIVE.init_head, help="head weight init factor")
    group.add_argument(
        "--init-std",
        type=optional_float,
        default=OBJECTIVE.init_std,
        help="Linear/Embedding init std ('none': sqrt(1 / (3 width)))",
    )
    group.add_argument("--preview-cfg", type=float, default=OBJECTIVE.preview_cfg, help="CFG of preview samples")
    add_run_arguments(parser, DEFAULTS)


def build_transformer_config(args: argparse.Namespace, tokenizer_config):
    import dataclasses

    from nextscale.presets import get_preset
    from nextscale.transformer.config import TransformerConfig

    _, preset = get_preset(args.preset)
    overrides = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    # The token interface always follows the tokenizer.
    fit = dict(
        vocab_size=tokenizer_config.vocab_size,
        code_dim=tokenizer_config.code_dim,
        scale_sides=tuple(tokenizer_config.scale_sides),
    )
    if args.depth is not None:
        keep = {"num_classes": preset.num_classes, "shared_adaln": preset.shared_adaln}
        return TransformerConfig.from_depth(args.depth, **{**keep, **fit, **overrides})
    return dataclasses.replace(preset, **fit, **overrides)


def run(args: argparse.Namespace) -> int:
    from nextscale import distributed
    from nextscale.data.token_shards import TokenShardDataset
    from nextscale.training.config import seed_everything
    from nextscale.training.export import load_tokenizer
    from nextscale.training.options import apply_run_file, build_datasets, train_config_from_args
    from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer

    apply_run_file(args)
    if not args.run_dir or not args.tokenizer:
        raise ValueError("--run-dir and --tokenizer are required (or give them in the --config file)")
    if not args.tokens and not args.data:
        raise ValueError("give the training data: --tokens DIR (from `nextscale tokenize`) or --data SPEC")
    dist_info = distributed.init_distributed(device=args.device)
    try:
        tokenizer = load_tokenizer(args.tokenizer, args.scale_sides)
        config = tokenizer.config
        train_set = eval_set = None
        if args.data:
            train_set, eval_set = build_datasets(args.data, config.image_size, config.in_channels, seed=args.seed)
        if args.tokens:
            train_set = TokenShardDataset(args.tokens, tokenizer)
        if args.eval_tokens:
            eval_set = TokenShardDataset(args.eval_tokens, tokenizer)
        objective = TransformerObjective(
            label_smoothing=args.label_smoothing,
            progressive=args.progressive,
            progressive_first_stage=args.progressive_first_stage,
            progressive_stage_warmup=args.progressive_stage_warmup,
            init_adaln=args.init_adaln,
            init_adaln_gamma=args.init_adaln_gamma,
            init_head=args.init_head,
            init_std=args.init_std,
            preview_cfg=args.preview_cfg,
        )
        seed_everything(args.seed)  # identical initial weights on every rank
        transformer = build_transformer(build_transformer_config(args, config), objective)
        train_config = train_config_from_args(args, len(train_set))
        run_config = {"data": args.data, "tokens": args.tokens, "tokenizer_source": str(args.tokenizer)}
        trainer = TransformerTrainer(
            transformer,
            tokenizer,
            objective,
            train_config,
            args.run_dir,
            train_set,
            eval_set,
            run_config=run_config,
            dist_info=dist_info,
        )
        metrics = trainer.fit(args.max_steps)
        if dist_info.is_main:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "/scale" not in k)
            print(f"transformer run {args.run_dir} at step {trainer.step}/{train_config.total_steps}: {shown}")
    finally:
        distributed.teardown()
    return 0
