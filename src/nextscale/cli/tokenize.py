"""Tokenize a dataset once with a frozen tokenizer into safetensors shards for `nextscale train --tokens`.

Examples:
    # Fashion-MNIST train split with the demo tokenizer: 60000 images, about 2 minutes on one CPU core
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --out tokens/fm-train
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --split test --out tokens/fm-test

    # ImageNet with the released VAR tokenizer, one shard set per GPU (center crops, no augmentation)
    torchrun --nproc_per_node=8 -m nextscale tokenize --tokenizer vae_ch160v4096z32.pth \\
        --data /data/imagenet --out tokens/imagenet-train

    # captioned 64 px scenes with the 32 px demo tokenizer on a 64 px schedule (captions stored as text)
    nextscale tokenize --tokenizer src/nextscale/assets/demo --scale-sides 1,2,4,8,16 \\
        --data captions:data/scenes-train --out tokens/scenes-train

Writes shard-XXXXX.safetensors files (tokens (N, L) int16/int32, and labels (N,) or the captions) and
manifest.json with the count, the scale schedule and hashes of the tokenizer's config and weights (checked
when training). Images are center-cropped (the evaluation transform): tokenizing once fixes the crops.
"""

from __future__ import annotations

import argparse

from nextscale.cli.data_report import add_resolution_argument
from nextscale.training.options import add_bad_images_argument, int_tuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer", required=True, help="tokenizer: component/pipeline folder, tokenizer run dir, or official .pth"
    )
    parser.add_argument(
        "--data", required=True, help="fashion-mnist[:DIR], an image folder, or captions:PATH (captioned images)"
    )
    parser.add_argument(
        "--split",
        choices=("train", "test", "val"),
        default="train",
        help="which split (default train); for a folder without val/ the training side or the held-out split "
        "carved from it, the same images `train-tokenizer` and `train` use (see nextscale.data.folders)",
    )
    parser.add_argument("--out", required=True, help="output token folder")
    add_bad_images_argument(parser)
    parser.add_argument(
        "--scale-sides", type=int_tuple, help="scale sides, e.g. 1,2,4,8,16 (default: the tokenizer's own)"
    )
    add_resolution_argument(parser, "tokenizer")
    parser.add_argument("--batch-size", type=int, default=256, help="images per encoder call (default 256)")
    parser.add_argument("--shard-size", type=int, default=50_000, help="samples per shard file (default 50000)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from nextscale import distributed
    from nextscale.cli.data_report import log_data_report, scale_sides_for, schedule_source
    from nextscale.data.token_shards import write_manifest, write_token_shards
    from nextscale.training.export import load_tokenizer, with_scale_sides
    from nextscale.training.options import CAPTIONS_PREFIX, build_datasets, report_skipped_images

    if args.batch_size < 1 or args.shard_size < 1:
        raise ValueError("--batch-size and --shard-size must be >= 1")
    if args.data.startswith(CAPTIONS_PREFIX) and args.split != "train":
        raise ValueError(
            f"--split {args.split}: captioned data has no splits, so this would tokenize the training captions; "
            "tokenize the held-out captions as their own set, e.g. --data captions:data/scenes-test"
        )
    with distributed.process_group(device=args.device) as dist_info:
        tokenizer = load_tokenizer(args.tokenizer, args.scale_sides)
        sides = scale_sides_for(args.resolution, args.scale_sides, tokenizer.config.downsample_factor)
        if sides is not None and sides != tuple(tokenizer.config.scale_sides):
            tokenizer = with_scale_sides(tokenizer, sides)
        tokenizer = tokenizer.to(dist_info.device).eval()
        config = tokenizer.config
        dataset, _ = build_datasets(
            args.data, config.image_size, config.in_channels, split=args.split, bad_images=args.bad_images
        )
        source = schedule_source(args, f"the tokenizer {args.tokenizer}")
        log_data_report(config, source, dataset, data_spec=args.data, role=args.split)
        write_token_shards(
            tokenizer,
            dataset,
            args.out,
            args.batch_size,
            args.shard_size,
            dist_info.rank,
            dist_info.world_size,
            progress=dist_info.is_main and not args.no_progress,
        )
        report_skipped_images((dataset,))
        distributed.barrier()
        if dist_info.is_main:
            condition = "text" if args.data.startswith(CAPTIONS_PREFIX) else "class"
            source = args.data if condition == "text" else f"{args.data}:{args.split}"
            names = getattr(dataset, "classes", None) if condition == "class" else None
            write_manifest(
                tokenizer,
                len(dataset),
                args.out,
                args.shard_size,
                source=source,
                condition=condition,
                class_names=names,
            )
            print(f"wrote {len(dataset)} token sequences of {config.schedule.total_tokens} tokens to {args.out}")
    return 0
