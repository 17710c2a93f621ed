"""Convert the official VAR or STAR checkpoints into a pipeline folder.

Examples:
    nextscale convert --vae vae_ch160v4096z32.pth --var var_d16.pth --out var-d16/
    nextscale sample --model var-d16/ --class 207 --seed 0 --cfg 4 --top-k 900 --top-p 0.95 --out d16.png
    nextscale convert --vae vae_ch160v4096z32.pth --star star-256-d16.pth --text-encoder clip-sd21/ --out star/
    nextscale sample --model star/ --prompt "a red apple" --seed 1 --cfg 4.5 --top-k 600 --top-p 0.8

Depth, width, heads, shared AdaLN, the scale schedule, the text width and the tokenizer width are read
from the state dicts (loaded with torch.load(weights_only=True): no code in the files is run); STAR
trainer states are read at ["trainer"]["var_wo_ddp"]. What STAR weights cannot tell comes from flags:
--image-size (10 scales are 256 px unless 512 is given; 14 scales are 1024 px) and the RoPE settings
(released: theta 10000, N 64). The released STAR weights were trained with the official code's batch-0
cross-attention (sample 0's text reaches every row), so the converted model reproduces it; pass
--per-sample-cross-attention for the corrected behaviour. Without --text-encoder the folder samples from
precomputed text features only (--text-features). The converted pipelines reproduce the official logits
and, with the same seed on a CPU, the official sampled tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", type=Path, required=True, help="official tokenizer state dict (vae_ch160v4096z32.pth)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--var", type=Path, help="official VAR transformer state dict (var_d16.pth, ...)")
    model.add_argument("--star", type=Path, help="official STAR checkpoint (trainer state or state dict)")
    parser.add_argument("--out", type=Path, required=True, help="output pipeline folder")
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    star = parser.add_argument_group("STAR")
    star.add_argument(
        "--text-encoder",
        type=Path,
        default=None,
        metavar="DIR",
        help="local Hugging Face folder of the text encoder (CLIP text tower of width 1024 for the releases); "
        "its path is recorded in the pipeline folder",
    )
    star.add_argument("--image-size", type=int, choices=(256, 512, 1024), default=None, help="training resolution")
    star.add_argument("--rope-theta", type=float, default=10000.0, help="RoPE base (default: 10000)")
    star.add_argument("--rope-norm", type=float, default=64.0, help="RoPE coordinate range N (default: 64)")
    star.add_argument(
        "--per-sample-cross-attention",
        action="store_true",
        help="use each sample's own cross-attention instead of the official batch-0 behaviour",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from nextscale.tokenizer.official import load_official_vqvae

    for flag, path in (("--vae", args.vae), ("--var", args.var), ("--star", args.star)):
        check_checkpoint_file(flag, path)
    dtype = torch.float16 if args.half else None
    if args.star is None:
        from nextscale.sampling.pipeline import Pipeline
        from nextscale.transformer.official import load_official_var

        if args.text_encoder is not None:
            raise ValueError("--text-encoder goes with --star (VAR models are class-conditional)")
        transformer = load_official_var(args.var)
        tokenizer = load_official_vqvae(args.vae, scale_sides=transformer.config.scale_sides)
        pipe = Pipeline(tokenizer, transformer)
        pipe.save_pretrained(args.out, dtype=dtype)
        config = transformer.config
        print(
            f"wrote {args.out}: VAR depth {config.depth} (width {config.embed_dim}, {config.num_heads} heads, "
            f"shared AdaLN {config.shared_adaln}), scales {config.scale_sides}, image size {pipe.image_size}px"
        )
        return 0

    from nextscale.sampling.text_pipeline import TextPipeline
    from nextscale.text import load_text_encoder
    from nextscale.transformer.text_official import load_official_star

    transformer = load_official_star(
        args.star,
        image_size=args.image_size,
        rope_theta=args.rope_theta,
        rope_norm=args.rope_norm,
        batch0_cross_attention=not args.per_sample_cross_attention,
    )
    tokenizer = load_official_vqvae(args.vae, scale_sides=transformer.config.scale_sides)
    text_encoder = None if args.text_encoder is None else load_text_encoder(args.text_encoder)
    pipe = TextPipeline(tokenizer, transformer, text_encoder)
    pipe.save_pretrained(args.out, dtype=dtype)
    config = transformer.config
    encoder = (
        "no text encoder (sample with --text-features)" if text_encoder is None else f"text encoder {args.text_encoder}"
    )
    mode = "official batch-0" if config.official_batch0_cross_attention else "per-sample"
    print(
        f"wrote {args.out}: STAR depth {config.depth} (width {config.embed_dim}, {config.num_heads} heads, text width "
        f"{config.text_dim}), scales {config.scale_sides}, image size {pipe.image_size}px, {mode} cross-attention, "
        f"{encoder}"
    )
    return 0


def check_checkpoint_file(flag: str, path: Path | None) -> None:
    """Before anything is loaded: a checkpoint flag must name an existing file, not a folder."""
    if path is None:
        return
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give the checkpoint file itself (a .pth file)")
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} not found; give the path of the official checkpoint file")
