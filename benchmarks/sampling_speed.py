"""Sampling speed of a d16-shaped VAR (random weights) on this machine, next to its measured matmul peak.

Usage:
    .venv/bin/python benchmarks/sampling_speed.py [--depth 16] [--batch 1 8] [--threads 2] [--decode]
        [--device cuda] [--bf16]

Prints, per batch size: seconds for the next-scale loop (transformer + sampler + f-hat updates), seconds
for the tokenizer decode (with --decode, ch=160 at 256 px), tokens/s, the loop's achieved GFLOP/s
(matmul FLOPs counted analytically, CFG doubling included) and the ratio to the measured fp32 matmul peak.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import benchmark_device, machine_name, matmul_peak_flops, synchronize

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


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
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode", action="store_true", help="also time the ch=160 tokenizer decode")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="run the loop under bf16 autocast (peak in bf16 too)")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer_config, transformer_config = var(args.depth)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval().to(device)
    transformer = ScaleTransformer(transformer_config).eval().to(device)
    sampler = ScaleSampler(tokenizer, transformer)
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    peak = matmul_peak_flops(device, dtype) / 1e9
    machine = machine_name(device)
    print(
        f"machine: {machine}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}; "
        f"{str(dtype).removeprefix('torch.')} matmul peak {peak:.1f} GFLOP/s"
    )
    print(
        f"model: VAR d{args.depth}, {sum(p.numel() for p in transformer.parameters()) / 1e6:.1f}M params, "
        f"L={transformer_config.schedule.total_tokens} tokens per image"
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    with autocast:
        sampler.sample([0], config=config, generator=torch.Generator(device).manual_seed(0))  # warm-up
    for batch in args.batch:
        labels = list(range(batch))
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            result = sampler.sample(labels, config=config, generator=torch.Generator(device).manual_seed(0))
        synchronize(device)
        loop_s = time.perf_counter() - start
        flops = sampling_flops(transformer_config, batch, guided=True)
        tokens = batch * transformer_config.schedule.total_tokens
        line = (
            f"B={batch}: loop {loop_s:.2f} s, {tokens / loop_s:.0f} tokens/s, {flops / loop_s / 1e9:.1f} GFLOP/s "
            f"({flops / loop_s / 1e9 / peak:.0%} of peak)"
        )
        if args.decode:
            start = time.perf_counter()
            with autocast:
                sampler.decode(result.f_hat)
            synchronize(device)
            line += f", decode {time.perf_counter() - start:.2f} s"
        if device.type == "cuda":
            line += f", peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        print(line)


if __name__ == "__main__":
    main()
