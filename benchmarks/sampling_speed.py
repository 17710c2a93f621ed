"""Sampling speed of a d16-shaped VAR (random weights), side by side with the official sampler's steps in one run,
next to the matmul peak measured in the same run.

Usage:
    .venv/bin/python benchmarks/sampling_speed.py [--depth 16 | --tiny] [--batch 1 8] [--repeats 2] [--threads 2]
        [--device cuda] [--bf16]

Both paths run the same weights, labels and seed (cfg 1.5, top-k 900, top-p 0.96), each call from labels to
images **including the tokenizer decode** (ch=160 at 256 px):

- ``reference``: ``reference_sampler.reference_sample``, what the official sampler does (eager float32, AdaLN
  re-evaluated at every scale, a KV cache grown by concatenation, NCHW decode). It runs in this process:
  ``ScaleSampler``, unlike ``Pipeline``, keeps no freed CPU memory between calls, so both paths allocate alike
  (``sampling_paths.py`` compares the pipelines, and runs the reference in a worker process for that reason).
- ``nextscale``: ``ScaleSampler.sample`` (the next-scale loop: transformer + sampler + f-hat updates), then
  ``ScaleSampler.decode``; with ``--bf16`` the loop and the decode run under bf16 autocast (the reference stays
  float32).

After one warm-up call each, the two paths alternate call by call (the first of each round alternates too) for
``--repeats`` rounds per batch size, so load from other processes slows both alike. Printed per batch size: the
nextscale loop's best seconds, tokens/s, achieved GFLOP/s (matmul FLOPs counted analytically, CFG doubling
included) and its share of the matmul peak of its dtype, its decode's best seconds and its peak memory; then per
path the best and mean seconds per call, images/s, the speed-up of the best over the reference's best, the call's
GFLOP/s (transformer matmuls + decoder convolutions) against the float32 peak, peak memory (CUDA max allocated,
or the CPU process's peak RSS) and whether the tokens and images equal the reference's (float32: every token).
``--decode`` is accepted for older command lines; the decode is always timed now, as the reference's call has it.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import (
    TINY_PEAK_SIZE,
    add_threads_argument,
    benchmark_device,
    machine_name,
    matmul_peak_flops,
    peak_memory,
    reset_peak_memory,
    set_threads,
    synchronize,
)
from reference_sampler import reference_sample

from nextscale.presets import tiny, var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

PATHS = ("reference", "nextscale")
SEED = 0


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


def build_models(depth: int, use_tiny: bool, device: torch.device) -> tuple[MultiScaleVQVAE, ScaleTransformer]:
    """The seeded random-weight tokenizer and transformer that both paths sample with."""
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny() if use_tiny else var(depth)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval().to(device)
    return tokenizer, ScaleTransformer(transformer_config).eval().to(device)


def reference_call(
    sampler: ScaleSampler, labels: list[int], config: SamplingConfig
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """One official-steps call: (seconds, tokens (B, L), images (B, 3, H, W) in [0, 1])."""
    device = sampler.device
    synchronize(device)
    start = time.perf_counter()
    tokens, images = reference_sample(
        sampler.tokenizer, sampler.transformer, labels, config, torch.Generator(device).manual_seed(SEED)
    )
    synchronize(device)
    return time.perf_counter() - start, tokens, images


def nextscale_call(
    sampler: ScaleSampler, labels: list[int], config: SamplingConfig, bf16: bool
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """One ScaleSampler call: (loop seconds, decode seconds, tokens (B, L), images (B, 3, H, W) in [0, 1])."""
    device = sampler.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        synchronize(device)
        start = time.perf_counter()
        result = sampler.sample(labels, config=config, generator=torch.Generator(device).manual_seed(SEED))
        synchronize(device)
        middle = time.perf_counter()
        images = sampler.decode(result.f_hat)
        synchronize(device)
    return middle - start, time.perf_counter() - middle, result.tokens, images


def compare_with_reference(tokens: torch.Tensor, images: torch.Tensor, reference: tuple) -> str:
    """How far a path's output is from the reference's, in one phrase."""
    ref_tokens, ref_images = reference
    same_tokens = tokens.eq(ref_tokens).float().mean().item()
    if torch.equal(images, ref_images):
        return f"tokens equal to reference {same_tokens:.1%}, images bit-identical"
    return f"tokens equal to reference {same_tokens:.1%}, images max |diff| {(images - ref_images).abs().max():.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument(
        "--tiny", action="store_true", help="presets.tiny instead: seconds on a CPU, to check the script runs"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per path and batch (after a warm-up)")
    add_threads_argument(parser)
    parser.add_argument("--decode", action="store_true", help="accepted for old command lines: always timed now")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="run nextscale under bf16 autocast (peak in bf16 too)")
    args = parser.parse_args()
    if args.repeats < 1 or min(args.batch) < 1:
        parser.error("--repeats and --batch need positive whole numbers")
    device = benchmark_device(args.device)
    threads = set_threads(args)
    tokenizer, transformer = build_models(args.depth, args.tiny, device)
    transformer_config = transformer.config
    sampler = ScaleSampler(tokenizer, transformer)
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    loop_dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak_size = TINY_PEAK_SIZE if args.tiny else None  # a tiny run's figures mean nothing: no seconds-long peak
    peaks = {dtype: matmul_peak_flops(device, dtype, size=peak_size) / 1e9 for dtype in (torch.float32, loop_dtype)}
    print(
        f"machine: {machine_name(device)}, {threads} CPU threads, torch {torch.__version__}; "
        + ", ".join(
            f"{str(dtype).removeprefix('torch.')} matmul peak {peak:.1f} GFLOP/s" for dtype, peak in peaks.items()
        )
        + (f" (tiny run: a {TINY_PEAK_SIZE}-sided product, not the machine's peak)" if args.tiny else "")
    )
    print(
        f"model: {'tiny preset' if args.tiny else f'VAR d{args.depth}'}, "
        f"{sum(p.numel() for p in transformer.parameters()) / 1e6:.1f}M params, "
        f"L={transformer_config.schedule.total_tokens} tokens per image, cfg 1.5, top-k 900, top-p 0.96, random weights"
    )
    print("path reference: the official sampler's steps (eager float32, reference_sampler.py), decode included")
    print(f"path nextscale: ScaleSampler ({'bf16 autocast' if args.bf16 else 'float32'}), decode included")
    from sampling_paths import decoder_flops  # here, not at the top: sampling_paths imports this module

    reference_call(sampler, [0], config)  # warm-up: first-call allocations and kernel choices
    nextscale_call(sampler, [0], config, args.bf16)
    for batch in args.batch:
        labels = [index % transformer_config.num_classes for index in range(batch)]
        times = {name: [] for name in PATHS}
        loops, decodes, outputs, memory = [], [], {}, {}
        for repeat in range(args.repeats):
            for name in PATHS if repeat % 2 == 0 else PATHS[::-1]:
                was_reset = reset_peak_memory(device)
                if name == "reference":
                    seconds, *outputs[name] = reference_call(sampler, labels, config)
                else:
                    loop_s, decode_s, *outputs[name] = nextscale_call(sampler, labels, config, args.bf16)
                    loops.append(loop_s)
                    decodes.append(decode_s)
                    seconds = loop_s + decode_s
                memory[name] = peak_memory(device, was_reset)
                times[name].append(seconds)
        loop_s, loop_flops = min(loops), sampling_flops(transformer_config, batch, guided=True)
        tokens = batch * transformer_config.schedule.total_tokens
        print(
            f"B={batch}: loop {loop_s:.2f} s, {tokens / loop_s:.0f} tokens/s, {loop_flops / loop_s / 1e9:.1f} GFLOP/s "
            f"({loop_flops / loop_s / 1e9 / peaks[loop_dtype]:.0%} of peak), decode {min(decodes):.2f} s, "
            f"peak memory {memory['nextscale']}"
        )
        call_gflop = (loop_flops + decoder_flops(tokenizer, batch, device)) / 1e9
        ref_best = min(times["reference"])
        for name in PATHS:
            best, mean = min(times[name]), sum(times[name]) / len(times[name])
            rate = call_gflop / best
            print(
                f"  {name:<9} call best {best:7.2f} s  mean {mean:7.2f} s  {batch / best:7.2f} img/s  "
                f"x{ref_best / best:.2f} vs reference  {rate:7.1f} GFLOP/s ({rate / peaks[torch.float32]:.0%} of the "
                f"float32 peak)  peak {memory[name]}  " + compare_with_reference(*outputs[name], outputs["reference"])
            )


if __name__ == "__main__":
    main()
