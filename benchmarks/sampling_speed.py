"""Sampling speed of a d16-shaped VAR (random weights) on this machine, next to its measured matmul peak.

Usage:
    .venv/bin/python benchmarks/sampling_speed.py [--depth 16] [--batch 1 8] [--threads 2] [--decode]

Prints, per batch size: seconds for the next-scale loop (transformer + sampler + f-hat updates), seconds
for the tokenizer decode (with --decode, ch=160 at 256 px), tokens/s, the loop's achieved GFLOP/s
(matmul FLOPs counted analytically, CFG doubling included) and the ratio to the measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def sampling_flops(config, batch: int, guided: bool) -> float:
    """Matmul FLOPs of one sampling call: per scale, every block's qkv/proj/FFN on the new tokens,
    attention of the new tokens over the cache, and the head."""
    rows = batch * (2 if guided else 1)
    width, hidden = config.embed_dim, int(config.embed_dim * config.mlp_ratio)
    schedule = config.schedule
    total = 0.0
    for k, count in enumerate(schedule.token_counts):
        context = schedule.offsets[k + 1]
        per_layer = 2 * count * (4 * width * width + 2 * width * hidden) + 4 * count * context * width
        total += rows * (config.depth * per_layer + 2 * count * width * config.vocab_size)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode", action="store_true", help="also time the ch=160 tokenizer decode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer_config, transformer_config = var(args.depth)
    tokenizer, transformer = MultiScaleVQVAE(tokenizer_config).eval(), ScaleTransformer(transformer_config).eval()
    sampler = ScaleSampler(tokenizer, transformer)
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    peak = matmul_peak_gflops()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; fp32 matmul peak {peak:.1f} GFLOP/s (2048^2)"
    )
    print(
        f"model: VAR d{args.depth}, {sum(p.numel() for p in transformer.parameters()) / 1e6:.1f}M params, "
        f"L={transformer_config.schedule.total_tokens} tokens per image"
    )
    sampler.sample([0], config=config, generator=torch.Generator().manual_seed(0))  # warm-up
    for batch in args.batch:
        labels = list(range(batch))
        start = time.perf_counter()
        result = sampler.sample(labels, config=config, generator=torch.Generator().manual_seed(0))
        loop_s = time.perf_counter() - start
        flops = sampling_flops(transformer_config, batch, guided=True)
        tokens = batch * transformer_config.schedule.total_tokens
        line = (
            f"B={batch}: loop {loop_s:.2f} s, {tokens / loop_s:.0f} tokens/s, {flops / loop_s / 1e9:.1f} GFLOP/s "
            f"({flops / loop_s / 1e9 / peak:.0%} of peak)"
        )
        if args.decode:
            start = time.perf_counter()
            sampler.decode(result.f_hat)
            line += f", decode {time.perf_counter() - start:.2f} s"
        print(line)


if __name__ == "__main__":
    main()
