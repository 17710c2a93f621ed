"""One training forward + backward of a d16-shaped VAR under the dense block-causal bias and under FlexAttention.

Usage:
    .venv/bin/python benchmarks/attention_mask_speed.py --device cuda [--image-size 256|512|1024] [--depth 16]
        [--batch 8] [--steps 5] [--fp32] [--threads 2] [--tiny]

The model is ``ScaleTransformer`` of ``nextscale.presets.var(depth)`` (random weights, training mode) on the
``nextscale.scales`` schedule of the image size (256 px: L = 680, 512 px: L = 2,240, 1024 px: L = 9,451), with
random teacher-forcing inputs (B, L - 1, code_dim) and targets (B, L). A step is forward, cross-entropy over all L
tokens and backward (no optimizer), under bf16 autocast on CUDA (``--fp32`` turns it off). Reference path:
**dense** (the (1, 1, L, L) float32 bias buffer, cast to the compute dtype each forward, passed to SDPA);
compared path: **flex** (``model.use_attention_mask("flex")``: a BlockMask and compiled FlexAttention). One
model switches between the two, alternating step by step after one untimed warm-up step each (flex compiles
there); switching to flex frees the dense buffer, so flex's peak memory excludes it.

Prints the machine and threads, the dense mask's bytes (buffer and per-forward cast), the block mask's skipped-tile
share, and per path the best and mean seconds per step and the peak memory of its last step (CUDA max allocated,
or the CPU process's peak RSS). On CPU flex has no backward (PyTorch 2.13), so both paths time the forward only
there, and flex runs **eagerly** there (``layers/attention.py``: compiled CPU flex fails to build at some lengths),
which computes the whole score matrix: the CPU figure is labelled as such and says nothing of the compiled kernel.
``--tiny`` runs ``presets.tiny``'s transformer instead (seconds on a CPU): to check that the script runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from machine import (
    add_threads_argument,
    benchmark_device,
    machine_name,
    peak_memory,
    reset_peak_memory,
    set_threads,
    synchronize,
)

from nextscale.presets import tiny, var
from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.transformer.block_mask import block_causal_mask
from nextscale.transformer.model import ScaleTransformer

SIDES = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}
# On CPU the model runs flex_attention uncompiled (see the module docstring): say so wherever its figure appears.
EAGER_FLEX = "flex (eager on CPU: not the compiled kernel)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--image-size", type=int, choices=sorted(SIDES), default=256)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path (after one warm-up step each)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    add_threads_argument(parser)
    parser.add_argument(
        "--tiny", action="store_true", help="presets.tiny's transformer instead: seconds on a CPU, to check it runs"
    )
    args = parser.parse_args()
    device = benchmark_device(args.device)
    threads = set_threads(args)
    torch.manual_seed(0)
    if args.tiny:
        config, model_name = tiny()[1], "tiny preset"
    else:
        config = dataclasses.replace(var(args.depth)[1], scale_sides=SIDES[args.image_size])
        model_name = f"VAR d{args.depth} at {args.image_size} px"
    model = ScaleTransformer(config).to(device).train()
    length = config.schedule.total_tokens
    backward = device.type == "cuda"
    bf16 = device.type == "cuda" and not args.fp32

    generator = torch.Generator(device).manual_seed(0)
    labels = torch.randint(0, config.num_classes, (args.batch,), generator=generator, device=device)
    teacher = torch.randn(args.batch, length - 1, config.code_dim, generator=generator, device=device)
    targets = torch.randint(0, config.vocab_size, (args.batch, length), generator=generator, device=device)

    def step(mode: str) -> tuple[float, str]:
        """One step under ``mode``; returns its seconds and its peak memory (CUDA allocated, or CPU RSS)."""
        model.use_attention_mask(mode)  # dense: builds the L x L buffer; flex: frees it
        was_reset = reset_peak_memory(device)
        synchronize(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(labels, teacher)  # (B, L, V) float32
        if backward:
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
            model.zero_grad(set_to_none=True)
        synchronize(device)
        seconds = time.perf_counter() - start
        return seconds, peak_memory(device, was_reset)

    mask_bytes = length * length * 4
    cast_bytes = length * length * (2 if bf16 else 0)
    block_mask = block_causal_mask(config.schedule.level_ids())
    tiles = block_mask.kv_indices.shape[-1]
    listed = int(block_mask.kv_num_blocks.sum() + block_mask.full_kv_num_blocks.sum())
    skipped = 100 * (1 - listed / tiles**2)
    print(f"machine: {machine_name(device)}, torch {torch.__version__}, {threads} CPU threads")
    print(
        f"model: {model_name}, L={length}, B={args.batch}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, {'forward + backward' if backward else 'forward only (CPU)'}"
    )
    print(
        f"dense mask: {mask_bytes / 2**20:,.0f} MiB float32 buffer"
        + (f" + {cast_bytes / 2**20:,.0f} MiB bf16 copy per forward" if cast_bytes else "")
        + f"; flex block mask skips {skipped:.0f} % of the {tiles} x {tiles} tiles of 128 x 128"
    )
    modes = ("dense", "flex")
    shown_as = {"dense": "dense (ref)", "flex": "flex" if device.type == "cuda" else EAGER_FLEX}
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    peaks = dict.fromkeys(modes, "")
    for mode in modes:  # warm-up: cuDNN/SDPA selection, flex compilation
        step(mode)
    for _ in range(args.steps):  # the two paths alternate, so load from other processes hits both alike
        for mode in modes:
            seconds, peaks[mode] = step(mode)
            times[mode].append(seconds)
    for mode in modes:
        best, mean = min(times[mode]), sum(times[mode]) / len(times[mode])
        print(f"{shown_as[mode]}: {best:.4f} s/step best, {mean:.4f} mean of {args.steps}, peak memory {peaks[mode]}")
    print(f"{shown_as['flex']} speed-up over dense: {min(times['dense']) / min(times['flex']):.2f}x")


if __name__ == "__main__":
    main()
