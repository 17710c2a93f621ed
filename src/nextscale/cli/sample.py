"""Sample images from a pipeline folder: class-conditional (VAR) or from prompts (STAR).

Examples (the official FID settings, on a converted VAR model; the official STAR demo settings):
    nextscale sample --model var-d16/ --class 207 980 --num 4 --seed 42 --cfg 1.5 --top-k 900 --top-p 0.96 \
        --out grid.png --out-dir samples/ --save-tokens tokens.safetensors
    nextscale sample --model star-256/ --prompt "a red apple" "a blue car" --negative-prompt "blurry" \
        --seed 1 --cfg 4.5 --top-k 600 --top-p 0.8 --out grid.png --out-dir samples/
    nextscale sample --model star-256/ --text-features feats.safetensors --cfg 4 --out grid.png

Without --class, labels are drawn from the seeded generator (the official sampler's first draw) and
--num is the number of images. The same seed on a CPU gives the official sampler's tokens.
With --prompt, --num is the number of images per prompt and --out-dir writes {index:04d}.png plus
prompts.txt (one prompt per image, in order). --text-features reads precomputed text-encoder outputs
(tensors prompt_embeds (B, T, D), pooled_prompt_embeds (B, D), optional prompt_attention_mask (B, T) and
the same three negative_*), for folders converted without a text encoder.
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
    condition = parser.add_mutually_exclusive_group()
    add_classes_argument(condition, help="class ids to sample (class models; default: drawn at random)")
    condition.add_argument("--prompt", nargs="+", default=None, metavar="TEXT", help="prompts (text models)")
    condition.add_argument(
        "--text-features", type=Path, default=None, metavar="FILE", help="precomputed text features (safetensors)"
    )
    parser.add_argument(
        "--negative-prompt",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="one negative prompt for all, or one per prompt (text models; default: the empty prompt)",
    )
    parser.add_argument(
        "--num",
        type=int,
        default=1,
        help="images per class or prompt (or the number of images without --class; default: 1)",
    )
    add_sampling_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG grid (default: samples.png)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: --num or 8)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="also write one PNG per image: {index:04d}_class{label}.png, or {index:04d}.png + prompts.txt",
    )
    parser.add_argument(
        "--save-tokens",
        type=Path,
        default=None,
        help="write the (B, L) tokens as a safetensors file with one tensor named 'tokens'",
    )


def read_text_features(path: Path) -> dict:
    """The pipeline call's precomputed-feature arguments from a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nextscale.sampling.pipeline import TEXT_INPUTS

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (--text-features expects a safetensors file)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
    unknown = sorted(set(tensors) - set(TEXT_INPUTS))
    if unknown or "prompt_embeds" not in tensors:
        raise ValueError(
            f"{path} must hold prompt_embeds and pooled_prompt_embeds (optionally prompt_attention_mask and the "
            f"negative_* three); unexpected {unknown}"
        )
    return tensors


def run(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from nextscale.data.images import save_grid, to_pil
    from nextscale.pretrained import atomic_write, atomic_write_text

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    pipe = load_pipeline(args)
    text = args.prompt is not None or args.text_features is not None
    if text != pipe.is_text_conditional:
        raise ValueError(
            "this model is text-conditional: give --prompt"
            if pipe.is_text_conditional
            else "this model is class-conditional: give --class (or nothing), not --prompt / --text-features"
        )
    if args.negative_prompt is not None and not text:
        raise ValueError("--negative-prompt goes with --prompt")
    inputs = read_text_features(args.text_features) if args.text_features is not None else {}
    if args.prompt is not None:
        inputs["prompt"] = args.prompt
    if args.negative_prompt is not None:
        inputs["negative_prompt"] = args.negative_prompt
    out = pipe(
        class_labels=args.classes, num_images_per_prompt=args.num, output_type="pt", **inputs, **sampling_kwargs(args)
    )
    count = len(out.images)
    per_group = args.num > 1 and (args.classes or text)
    nrow = args.nrow or (args.num if per_group else min(8, count))
    save_grid(out.images * 2 - 1, args.out, nrow=nrow)
    described = (
        f"classes {out.class_labels.tolist()}" if out.class_labels is not None else f"{count // args.num} prompts"
    )
    print(f"wrote {count} images to {args.out} ({described})")
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        labels = out.class_labels.tolist() if out.class_labels is not None else None
        for index, image in enumerate(to_pil(out.images * 2 - 1)):
            name = f"{index:04d}.png" if labels is None else f"{index:04d}_class{labels[index]}.png"
            image.save(args.out_dir / name)
        if out.prompts is not None:
            atomic_write_text(args.out_dir / "prompts.txt", "".join(f"{p}\n" for p in out.prompts))
        print(f"wrote one PNG per image to {args.out_dir}/")
    if args.save_tokens is not None:
        tokens = out.tokens.cpu().contiguous()
        atomic_write(args.save_tokens, lambda tmp: save_file({"tokens": tokens}, tmp))
        print(f"wrote tokens {tuple(tokens.shape)} to {args.save_tokens}")
    return 0
