"""Sampling cost of next-scale (VAR) vs next-token raster-scan prediction on the paper's 256 px grid.

Usage:
    .venv/bin/python benchmarks/raster_vs_var_speed.py [--depth 16] [--batch 1 8] [--threads 2] [--device cuda]

Both models are built from the same VAR blocks with the d-shaped width rule and random weights; both
sample with cfg 1.5, top-k 900, top-p 0.96 in float32 with a KV cache, in the same run. VAR runs 10
sequential steps over 680 tokens (scales 1..16); the raster model runs 256 sequential steps over the
256 tokens of the 16x16 map. The tokenizer decode is the same for both and is left out. Prints seconds,
the ratio, sequential steps, tokens processed and matmul FLOPs of each loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from machine import add_machine_arguments, machine_from_arguments, machine_name, synchronize

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.raster_sampler import RasterSampler
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer


def layer_flops(tokens: int, context: int, width: int, hidden: int) -> float:
    """Matmul FLOPs of one block for ``tokens`` new tokens attending over ``context`` keys."""
    return 2 * tokens * (4 * width * width + 2 * width * hidden) + 4 * tokens * context * width


def var_flops(config, rows: int) -> float:
    width, hidden, schedule = config.embed_dim, int(config.embed_dim * config.mlp_ratio), config.schedule
    total = 0.0
    for k, count in enumerate(schedule.token_counts):
        context = schedule.offsets[k + 1]
        total += rows * (
            config.depth * layer_flops(count, context, width, hidden) + 2 * count * width * config.vocab_size
        )
    return total


def raster_flops(config: RasterConfig, rows: int) -> float:
    width, hidden = config.embed_dim, int(config.embed_dim * config.mlp_ratio)
    total = 0.0
    for position in range(config.sequence_length):
        total += rows * (config.depth * layer_flops(1, position + 1, width, hidden) + 2 * width * config.vocab_size)
    return total


def timed(sampler, labels: list[int], config: SamplingConfig, device: torch.device) -> float:
    """Seconds of one sampling call (seed 0)."""
    synchronize(device)
    start = time.perf_counter()
    sampler.sample(labels, config=config, generator=torch.Generator(device).manual_seed(0))
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    add_machine_arguments(parser)
    args = parser.parse_args()
    device = machine_from_arguments(args)
    torch.manual_seed(0)
    tokenizer_config, var_config = var(args.depth)
    side = tokenizer_config.scale_sides[-1]
    var_tokenizer = MultiScaleVQVAE(tokenizer_config).eval().to(device)
    raster_tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, scale_sides=(side,))).eval().to(device)
    raster_config = RasterConfig.from_depth(
        args.depth, num_classes=var_config.num_classes, vocab_size=var_config.vocab_size, side=side
    )
    var_sampler = ScaleSampler(var_tokenizer, ScaleTransformer(var_config).eval().to(device))
    raster_sampler = RasterSampler(raster_tokenizer, RasterTransformer(raster_config).eval().to(device))
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    machine = machine_name(device)
    print(f"machine: {machine}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, float32")
    print(
        f"d{args.depth}: VAR {sum(p.numel() for p in var_sampler.transformer.parameters()) / 1e6:.1f}M params, "
        f"{var_config.schedule.num_scales} steps over {var_config.schedule.total_tokens} tokens; raster "
        f"{sum(p.numel() for p in raster_sampler.transformer.parameters()) / 1e6:.1f}M params, "
        f"{raster_config.sequence_length} steps over {raster_config.sequence_length} tokens"
    )
    for sampler in (var_sampler, raster_sampler):  # warm-up
        sampler.sample([0], config=config, generator=torch.Generator(device).manual_seed(0))
    for batch in args.batch:
        labels = list(range(batch))
        var_s = timed(var_sampler, labels, config, device)
        raster_s = timed(raster_sampler, labels, config, device)
        rows = 2 * batch  # CFG doubles the batch
        print(
            f"B={batch}: VAR {var_s:.2f} s ({var_flops(var_config, rows) / 1e9:.0f} GFLOP), raster {raster_s:.2f} s "
            f"({raster_flops(raster_config, rows) / 1e9:.0f} GFLOP); raster / VAR = {raster_s / var_s:.2f}x"
        )


if __name__ == "__main__":
    main()
