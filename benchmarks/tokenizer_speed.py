"""Encode and decode speed of the VQ-VAE tokenizers, with a channels-last decode beside the eager reference.

Usage:
    .venv/bin/python benchmarks/tokenizer_speed.py [--device cpu] [--threads 2] [--repeats 1]
        [--batch-256 1 8] [--batch-32 64] [--skip-256]

Two tokenizers: the 256 px ch160 VQ-VAE of ``presets.var(16)`` (random weights: speed does not depend on
them) and the bundled 32 px Fashion-MNIST tokenizer (``src/nextscale/assets/demo``). For each batch size,
after one warm-up call of each path at that batch size, prints the best of ``--repeats`` calls of (the two
``decode_fhat`` paths alternate call by call):

- ``encode``: images -> K index maps (float32 eager);
- ``decode``: K index maps -> images (float32 eager; includes the indices -> f_hat lookup);
- ``decode_fhat``: f_hat -> images, the reference path (float32 eager, contiguous NCHW);
- ``decode_fhat channels-last``: the same on a copy of the model and an input in ``torch.channels_last``.

The ratio ``eager / channels-last`` (> 1: channels-last is faster) and the largest absolute difference of the
two decodes are printed. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` per call; on a CPU the
process's peak resident set (VmHWM, reset before each call where Linux allows it, otherwise the process-wide
``resource.getrusage`` maximum, which only grows and is marked "process max").
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from machine import benchmark_device, cpu_peak_gib, machine_name, reset_cpu_peak, synchronize

from nextscale.presets import var
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.export import load_tokenizer

DEMO = Path(__file__).resolve().parent.parent / "src" / "nextscale" / "assets" / "demo"


def measure(
    fn: Callable[[], torch.Tensor | list[torch.Tensor]], device: torch.device, repeats: int, warmup: bool = True
):
    """Best seconds of ``repeats`` calls (after one warm-up call), the peak memory of those calls, the last output."""
    if warmup:
        fn()  # at this shape: oneDNN / cuDNN pick and cache kernels on first use
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    was_reset = device.type == "cpu" and reset_cpu_peak()
    best, out = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    memory = (
        f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB allocated"
        if device.type == "cuda"
        else cpu_peak_gib(was_reset)
    )
    return best, memory, out


@torch.no_grad()
def run(name: str, tokenizer: MultiScaleVQVAE, batches: list[int], device: torch.device, repeats: int) -> None:
    config = tokenizer.config
    channels_last = copy.deepcopy(tokenizer).to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in tokenizer.parameters()) / 1e6
    print(
        f"{name}: {config.image_size} px, {config.in_channels} channels, base width {config.base_channels}, "
        f"{params:.1f}M params, scales {config.scale_sides}"
    )
    generator = torch.Generator(device).manual_seed(0)
    for batch in batches:
        shape = (batch, config.in_channels, config.image_size, config.image_size)
        images = torch.rand(shape, generator=generator, device=device) * 2 - 1
        encode_s, encode_mem, indices = measure(partial(tokenizer.encode, images), device, repeats)
        decode_s, decode_mem, _ = measure(partial(tokenizer.decode, indices), device, repeats)
        f_hat = tokenizer.quantizer.indices_to_fhat(indices)  # (B, code_dim, h, w)
        f_hat_cl = f_hat.contiguous(memory_format=torch.channels_last)
        eager_fn, cl_fn = partial(tokenizer.decode_fhat, f_hat), partial(channels_last.decode_fhat, f_hat_cl)
        eager_fn(), cl_fn()  # warm-up both, then alternate them so that load from other processes hits both alike
        eager_s = cl_s = float("inf")
        for _ in range(repeats):
            seconds, eager_mem, eager = measure(eager_fn, device, 1, warmup=False)
            eager_s = min(eager_s, seconds)
            seconds, cl_mem, cl = measure(cl_fn, device, 1, warmup=False)
            cl_s = min(cl_s, seconds)
        difference = (eager - cl).abs().max().item()
        rows = [
            ("encode", encode_s, encode_mem),
            ("decode", decode_s, decode_mem),
            ("decode_fhat eager (ref)", eager_s, eager_mem),
            ("decode_fhat channels-last", cl_s, cl_mem),
        ]
        for label, seconds, memory in rows:
            print(f"  B={batch:<3} {label:<26} {seconds:8.3f} s  {batch / seconds:9.1f} img/s  peak {memory}")
        faster = "channels-last" if cl_s < eager_s else "eager NCHW"
        print(
            f"  B={batch:<3} decode_fhat eager / channels-last = {eager_s / cl_s:.2f}x ({faster} is faster here); "
            f"max |difference| {difference:.1e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per measurement (the best is shown)")
    parser.add_argument("--batch-256", type=int, nargs="+", default=[1, 8], help="batch sizes, 256 px tokenizer")
    parser.add_argument("--batch-32", type=int, nargs="+", default=[64], help="batch sizes, 32 px tokenizer")
    parser.add_argument("--skip-256", action="store_true", help="only the bundled 32 px tokenizer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = benchmark_device(args.device)
    torch.manual_seed(0)
    machine = machine_name(device)
    print(f"machine: {machine}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, float32")
    demo = load_tokenizer(DEMO).eval().to(device)
    run("bundled 32 px tokenizer", demo, args.batch_32, device, args.repeats)
    if not args.skip_256:
        tokenizer_config, _ = var(16)
        run(
            "256 px ch160 tokenizer (var(16), random weights)",
            MultiScaleVQVAE(tokenizer_config).eval().to(device),
            args.batch_256,
            device,
            args.repeats,
        )


if __name__ == "__main__":
    main()
