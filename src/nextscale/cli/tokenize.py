"""Tokenize a dataset once with a frozen tokenizer into safetensors shards for `nextscale train --tokens`.

Examples:
    # Fashion-MNIST train split with the demo tokenizer: 60000 images, about 2 minutes on one CPU core
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --out tokens/fm-train
    nextscale tokenize --tokenizer runs/fm-tokenizer --data fashion-mnist --split test --out tokens/fm-test

    # ImageNet with the released VAR tokenizer, one shard set per GPU (center crops, no augmentation)
    torchrun --nproc_per_node=8 -m nextscale tokenize --tokenizer vae_ch160v4096z32.pth \\
        --data /data/imagenet --out tokens/imagenet-train

    # ... with VAR's augmentation kept: 10 random crops per image, those of training epochs 0-9 (10x the time)
    torchrun --nproc_per_node=8 -m nextscale tokenize --tokenizer vae_ch160v4096z32.pth \\
        --data /data/imagenet --views 10 --seed 0 --out tokens/imagenet-train-10views

    # captioned 64 px scenes with the 32 px demo tokenizer on a 64 px schedule (captions stored as text); all of
    # them, as the held-out scenes are a folder of their own (tokenized with --split all too)
    nextscale tokenize --tokenizer src/nextscale/assets/demo --scale-sides 1,2,4,8,16 \\
        --data captions:data/scenes-train --split all --out tokens/scenes-train

Writes shard-XXXXX.safetensors files (tokens (N, L) int16/int32, and labels (N,) or every caption of each
image; training draws one per epoch) and manifest.json with the count, the scale schedule and hashes of the
tokenizer's config and weights (checked when training). Images are center-cropped (the evaluation transform):
tokenizing once fixes the crops. --views N keeps the augmentation instead: view v of each image is the random
crop that training from the images (`train --data`, same --seed) makes in epoch v, and training from the tokens
reads view epoch % N, so its first N epochs see exactly those crops (shards hold (n, N, L) tokens; N times the
encoding time and disk); with --split all they are the crops a run training on all of the data makes (held-out
splits are center crops, and refuse --views). Each image is decoded once per view: one that fails to decode (a
truncated file) is left out, never replaced by another image, and named at the end and in manifest.json's
"left_out" (an image folder under --bad-images fail stops at it instead).
--crop-margin R resizes each image's shorter side to R times the side before the crop (default: a tokenizer run's
own, for data of the kind it trained on, else 1.125 for an image folder, VAR's, 1.0 for captioned data; 1.0 keeps
the whole shorter side; a typed R other than the run's is warned about); manifest.json records it as "crop_margin",
and `train --tokens` crops its held-out --data images the same way (nextscale.training.crop_margin).
--out must be a new or empty folder; --overwrite replaces the token files of an existing one (its shards and
manifest.json, and the partly written files of a killed run, are removed first, once the tokenizer and data have
loaded, so no stale shard stays behind).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nextscale.cli.common import WRITE_PROBE_PREFIX, check_output_dir
from nextscale.cli.data_report import add_resolution_argument
from nextscale.training.crop_margin import add_crop_margin_argument
from nextscale.training.data_specs import add_bad_images_argument
from nextscale.training.options import int_tuple


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="tokenizer: component/pipeline folder, tokenizer run dir, official .pth, or a bundled model's "
        "(bundled:fashion-mnist, bundled:scenes)",
    )
    parser.add_argument(
        "--data", required=True, help="fashion-mnist[:DIR], an image folder, or captions:PATH (captioned images)"
    )
    parser.add_argument(
        "--split",
        choices=("train", "test", "val", "all"),
        default="train",
        help="which split (default train); for an image folder or captions:PATH without val/, the training side "
        "or the held-out split carved from it (about 5 %%), the same images `train-tokenizer` and `train` use (see "
        "nextscale.data.folders and nextscale.data.captions); all: every image of such data, nothing held out "
        "(a folder that is itself a held-out set, or training data with --eval-tokens made elsewhere)",
    )
    parser.add_argument("--out", required=True, help="output token folder (new or empty, unless --overwrite)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the token files (shard-*.safetensors, manifest.json) already in --out",
    )
    add_bad_images_argument(parser)
    parser.add_argument(
        "--scale-sides", type=int_tuple, help="scale sides, e.g. 1,2,4,8,16 (default: the tokenizer's own)"
    )
    add_resolution_argument(parser, "tokenizer")
    parser.add_argument(
        "--views",
        type=int,
        default=1,
        help="encodings per training image (default 1: the center crop); N > 1: the random crops training from "
        "the images makes in epochs 0..N-1, read back as view epoch %% N (image folders and captioned data; "
        "--split train or all)",
    )
    add_crop_margin_argument(parser, resumes=False)
    parser.add_argument(
        "--seed", type=int, default=0, help="with --views: seed of the crops (the `train --seed` they match)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per encoder call (default 256)")
    parser.add_argument("--shard-size", type=int, default=50_000, help="samples per shard file (default 50000)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def partial_files(out: Path) -> list[Path]:
    """Temporary files a killed run left in a token folder: a shard or manifest it was writing (``atomic_write``
    writes ``.NAME.XXXX.tmp`` and renames it into place)."""
    from nextscale.data.token_manifest import MANIFEST_NAME, SHARD_GLOB

    return sorted([*out.glob(f".{SHARD_GLOB}.*.tmp"), *out.glob(f".{MANIFEST_NAME}.*.tmp")])


def check_out_folder(out: Path, overwrite: bool) -> None:
    """--out can be written, and is new or empty unless --overwrite: tokenizing starts from scratch every
    time, so an existing token folder would be replaced silently (and a larger old run's extra shards kept)."""
    from nextscale.data.token_manifest import MANIFEST_NAME, SHARD_GLOB

    check_output_dir(out, "--out")
    if overwrite or not out.is_dir():
        return
    # other ranks' write probes may come and go while this rank looks
    names = sorted(path.name for path in out.iterdir() if not path.name.startswith(WRITE_PROBE_PREFIX))
    if not names:
        return
    shards = len(list(out.glob(SHARD_GLOB)))
    partial = len(partial_files(out))
    noun = "shard" if shards == 1 else "shards"
    if (out / MANIFEST_NAME).is_file():
        held = f"already holds a token folder ({shards} {noun} and {MANIFEST_NAME})"
    elif partial:
        held = f"holds an unfinished tokenization ({shards} {noun}, {partial} partly written, no {MANIFEST_NAME})"
    elif shards:
        held = f"holds {shards} {noun} of an unfinished tokenization (no {MANIFEST_NAME})"
    else:
        others = f"{names[0]}{' and more' if len(names) > 1 else ''}"
        raise ValueError(f"--out {out} is not empty (it holds {others}); give a new or empty folder for the tokens")
    raise ValueError(
        f"--out {out} {held}; choose another --out, delete the folder, or pass --overwrite to replace its token files"
    )


def check_out_outside_images(out: Path, data: str) -> None:
    """--out must not lie inside an image folder --data: there the token folder is listed as a class folder the
    next time the images are read (by a re-run, `train-tokenizer` or `train --data`), an empty class that shifts
    the labels of the classes sorted after it. Caption data and Fashion-MNIST list no folders as classes."""
    from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX

    if data.startswith(CAPTIONS_PREFIX) or data == FASHION_PREFIX or data.startswith(FASHION_PREFIX + ":"):
        return
    images = Path(data).resolve()
    if images.is_dir() and out.resolve().is_relative_to(images):
        raise ValueError(
            f"--out {out} lies inside the image folder --data {data}, where it would be read as a class folder; "
            "put the tokens outside it (e.g. next to it)"
        )


def remove_token_files(out: Path) -> None:
    """Delete an old run's manifest (first: the folder stops being a token folder), then its shards and the partly
    written files of a killed run; nothing else."""
    from nextscale.data.token_manifest import MANIFEST_NAME, SHARD_GLOB

    (out / MANIFEST_NAME).unlink(missing_ok=True)
    for shard in [*out.glob(SHARD_GLOB), *partial_files(out)]:
        shard.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    from nextscale import distributed
    from nextscale.cli.data_report import log_data_report, scale_sides_for, schedule_source
    from nextscale.data.token_manifest import read_manifest, write_manifest
    from nextscale.data.token_shards import write_token_shards
    from nextscale.training.crop_margin import tokenize_crop_margin
    from nextscale.training.data_specs import CAPTIONS_PREFIX, build_datasets
    from nextscale.training.export import check_not_run_checkpoint, load_tokenizer, with_scale_sides

    if args.batch_size < 1 or args.shard_size < 1 or args.views < 1:
        raise ValueError("--batch-size, --shard-size and --views must be >= 1")
    check_views(args)
    check_not_run_checkpoint("--tokenizer", args.tokenizer)
    chosen = getattr(args, "crop_margin", None)
    crop_margin, note = tokenize_crop_margin(args.data, chosen, args.tokenizer)  # None: Fashion-MNIST, no crop
    if note:  # a margin taken from the tokenizer run, or a typed one that differs from it
        log = distributed.get_logger("nextscale.data")
        (log.info if chosen is None else log.warning)(note)
    captioned = args.data.startswith(CAPTIONS_PREFIX)
    out = Path(args.out)
    check_out_outside_images(out, args.data)
    check_out_folder(out, args.overwrite)  # every rank, before any of them writes
    with distributed.process_group(device=args.device) as dist_info:
        tokenizer = load_tokenizer(args.tokenizer, args.scale_sides)
        trained_side = tokenizer.config.image_size
        sides = scale_sides_for(args.resolution, args.scale_sides, tokenizer.config.downsample_factor)
        if sides is not None and sides != tuple(tokenizer.config.scale_sides):
            tokenizer = with_scale_sides(tokenizer, sides)
        tokenizer = tokenizer.to(dist_info.device).eval()
        config = tokenizer.config
        dataset, _ = build_datasets(
            args.data,
            config.image_size,
            config.in_channels,
            seed=args.seed,
            split=args.split,
            bad_images=args.bad_images,
            random_crops=args.views > 1,
            crop_margin=crop_margin,
        )
        source = schedule_source(args, f"the tokenizer {args.tokenizer}")
        log_data_report(config, source, dataset, data_spec=args.data, role=args.split, trained_side=trained_side)
        if args.overwrite and dist_info.is_main and out.is_dir():
            remove_token_files(out)
        distributed.barrier()  # no rank writes a shard before the old ones are gone
        write_token_shards(
            tokenizer,
            dataset,
            args.out,
            args.batch_size,
            args.shard_size,
            dist_info.rank,
            dist_info.world_size,
            progress=dist_info.is_main and not args.no_progress,
            # Caption data always skips bad samples; --bad-images fail stops an image folder at one.
            skip_unreadable=args.bad_images == "skip",
            views=args.views,
        )
        distributed.barrier()
        if dist_info.is_main:
            condition = "text" if captioned else "class"
            source = args.data if captioned and args.split == "train" else f"{args.data}:{args.split}"
            names = getattr(dataset, "classes", None) if condition == "class" else None
            write_manifest(
                tokenizer,
                len(dataset),
                args.out,
                args.shard_size,
                source=source,
                condition=condition,
                class_names=names,
                views=args.views,
                split=args.split,
                crop_margin=crop_margin,
            )
            manifest = read_manifest(args.out)  # every rank's shards: the true count and left-out images
            log_left_out(manifest["left_out"], distributed.get_logger("nextscale.data"))
            count = manifest["count"]
            views = "" if args.views == 1 else f" ({args.views} views each)"
            sequences = "sequence" if count == 1 else "sequences"
            print(f"wrote {count} token {sequences}{views} of {config.schedule.total_tokens} tokens to {args.out}")
    return 0


def check_views(args: argparse.Namespace) -> None:
    """--views N > 1 needs training crops to differ: refused for held-out splits and for Fashion-MNIST. --split all
    (every image, as training data whose held-out set lies elsewhere) keeps training crops like --split train."""
    from nextscale.training.data_specs import FASHION_PREFIX

    if args.views == 1:
        return
    if args.split not in ("train", "all"):
        raise ValueError(
            f"--views {args.views} keeps the training crops of --split train or all; --split {args.split} tokens are "
            "center crops (held-out data is evaluated so): leave out --views"
        )
    if args.data == FASHION_PREFIX or args.data.startswith(FASHION_PREFIX + ":"):
        raise ValueError(
            f"--views {args.views}: Fashion-MNIST images are resized whole, without random crops, so every view "
            "would be the same; leave out --views (it is for image folders and captioned images)"
        )


def log_left_out(names: list[str], logger: logging.Logger | logging.LoggerAdapter) -> None:
    """One warning naming the images tokenizing left out (the first few; manifest.json lists them all)."""
    from nextscale.training.data_specs import SHOWN_BAD_FILES

    if not names:
        return
    shown = ", ".join(names[:SHOWN_BAD_FILES])
    hidden = len(names) - SHOWN_BAD_FILES
    more = f" and {hidden} more (all in manifest.json's left_out)" if hidden > 0 else ""
    images = "image that" if len(names) == 1 else "images that"
    logger.warning("left out %d %s could not be decoded: %s%s", len(names), images, shown, more)
