"""Sample class-conditional images from a pipeline folder.

Example (the official FID settings, on a converted VAR model):
    nextscale sample --model var-d16/ --class 207 980 --num 4 --seed 42 --cfg 1.5 --top-k 900 --top-p 0.96 \
        --out grid.png --out-dir samples/ --save-tokens tokens.safetensors

Without --class, labels are drawn from the seeded generator (the official sampler's first draw) and
--num is the number of images. The same seed on a CPU gives the official sampler's tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import (
    add_classes_argument,
    add_model_argument,
    add_sampling_arguments,
    load_pipeline,
    sampling_kwargs,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_classes_argument(parser, help="class ids to sample (default: drawn at random)")
    parser.add_argument(
        "--num", type=int, default=1, help="images per class (or the number of images without --class; default: 1)"
    )
    add_sampling_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG grid (default: samples.png)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: --num or 8)")
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="also write one PNG per image, named {index:04d}_class{label}.png"
    )
    parser.add_argument(
        "--save-tokens",
        type=Path,
        default=None,
        help="write the (B, L) tokens as a safetensors file with one tensor named 'tokens'",
    )


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from nextscale.data.images import save_grid
    from nextscale.pretrained import atomic_write

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    pipe = load_pipeline(args)
    out = pipe(class_labels=args.classes, num_images_per_prompt=args.num, output_type="pt", **sampling_kwargs(args))
    labels = out.class_labels.tolist()
    nrow = args.nrow or (args.num if args.classes and args.num > 1 else min(8, len(labels)))
    save_grid(out.images * 2 - 1, args.out, nrow=nrow)
    print(f"wrote {len(labels)} images to {args.out} (classes {labels})")
    if args.out_dir is not None:
        from nextscale.data.images import to_pil

        args.out_dir.mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(to_pil(out.images * 2 - 1), labels)):
            image.save(args.out_dir / f"{index:04d}_class{label}.png")
        print(f"wrote one PNG per image to {args.out_dir}/")
    if args.save_tokens is not None:
        tokens = out.tokens.cpu().contiguous()
        atomic_write(args.save_tokens, lambda tmp: save_file({"tokens": tokens}, tmp))
        print(f"wrote tokens {tuple(tokens.shape)} to {args.save_tokens}")
    return 0
