"""Convert the official VAR checkpoints into a pipeline folder.

Example:
    nextscale convert --vae vae_ch160v4096z32.pth --var var_d16.pth --out var-d16/
    nextscale sample --model var-d16/ --class 207 --seed 0 --cfg 4 --top-k 900 --top-p 0.95 --out d16.png

Depth, width, heads, shared AdaLN, the scale schedule and the tokenizer width are read from the state
dicts (loaded with torch.load(weights_only=True): no code in the files is run). The official buffers
(level ids, attention mask, zero k-bias) are checked against ours and dropped. The converted pipeline
reproduces the official logits and, with the same seed on a CPU, the official sampled tokens.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", type=Path, required=True, help="official tokenizer state dict (vae_ch160v4096z32.pth)")
    parser.add_argument("--var", type=Path, required=True, help="official transformer state dict (var_d16.pth, ...)")
    parser.add_argument("--out", type=Path, required=True, help="output pipeline folder")
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")


def run(args: argparse.Namespace) -> int:
    import torch

    from nextscale.sampling.pipeline import Pipeline
    from nextscale.tokenizer.official import load_official_vqvae
    from nextscale.transformer.official import load_official_var

    transformer = load_official_var(args.var)
    tokenizer = load_official_vqvae(args.vae, scale_sides=transformer.config.scale_sides)
    pipe = Pipeline(tokenizer, transformer)
    pipe.save_pretrained(args.out, dtype=torch.float16 if args.half else None)
    config = transformer.config
    print(
        f"wrote {args.out}: VAR depth {config.depth} (width {config.embed_dim}, {config.num_heads} heads, "
        f"shared AdaLN {config.shared_adaln}), scales {config.scale_sides}, image size {pipe.image_size}px"
    )
    return 0
