"""One training forward + backward of a d16-shaped VAR under the dense block-causal bias and under FlexAttention.

Usage:
    .venv/bin/python benchmarks/attention_mask_speed.py --device cuda [--image-size 256|512|1024] [--depth 16]
        [--batch 8] [--steps 5] [--fp32]

The model is ``ScaleTransformer`` of ``nextscale.presets.var(depth)`` (random weights, training mode) on the
``nextscale.scales`` schedule of the image size (256 px: L = 680, 512 px: L = 2,240, 1024 px: L = 9,451), with
random teacher-forcing inputs (B, L - 1, code_dim) and targets (B, L). A step is forward, cross-entropy over all L
tokens and backward (no optimizer), under bf16 autocast on CUDA (``--fp32`` turns it off). Reference path:
**dense** (the (1, 1, L, L) float32 bias buffer, cast to the compute dtype each forward, passed to SDPA);
compared path: **flex** (``model.use_attention_mask("flex")``: a BlockMask and compiled FlexAttention). One
model switches between the two, alternating step by step after one untimed warm-up step each (flex compiles
there); switching to flex frees the dense buffer, so flex's peak memory excludes it.

Prints the dense mask's bytes (buffer and per-forward cast), the block mask's skipped-tile share, and per path
the best and mean seconds per step and, on CUDA, the peak memory allocated during its steps.
On CPU flex has no backward (PyTorch 2.13), so both paths time the forward only there.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from machine import benchmark_device, machine_name, synchronize

from nextscale.presets import var
from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.transformer.block_mask import block_causal_mask
from nextscale.transformer.model import ScaleTransformer

SIDES = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--image-size", type=int, choices=sorted(SIDES), default=256)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path (after one warm-up step each)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = dataclasses.replace(var(args.depth)[1], scale_sides=SIDES[args.image_size])
    model = ScaleTransformer(config).to(device).train()
    length = config.schedule.total_tokens
    backward = device.type == "cuda"
    bf16 = device.type == "cuda" and not args.fp32

    generator = torch.Generator(device).manual_seed(0)
    labels = torch.randint(0, config.num_classes, (args.batch,), generator=generator, device=device)
    teacher = torch.randn(args.batch, length - 1, config.code_dim, generator=generator, device=device)
    targets = torch.randint(0, config.vocab_size, (args.batch, length), generator=generator, device=device)

    def step(mode: str) -> tuple[float, int]:
        """One step under ``mode``; returns its seconds and the peak bytes allocated during it (CUDA)."""
        model.use_attention_mask(mode)  # dense: builds the L x L buffer; flex: frees it
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        synchronize(device)
        start = time.perf_counter()
        with torch.set_grad_enabled(backward), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(labels, teacher)  # (B, L, V) float32
        if backward:
            F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
            model.zero_grad(set_to_none=True)
        synchronize(device)
        seconds = time.perf_counter() - start
        return seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0

    mask_bytes = length * length * 4
    cast_bytes = length * length * (2 if bf16 else 0)
    block_mask = block_causal_mask(config.schedule.level_ids())
    tiles = block_mask.kv_indices.shape[-1]
    listed = int(block_mask.kv_num_blocks.sum() + block_mask.full_kv_num_blocks.sum())
    skipped = 100 * (1 - listed / tiles**2)
    print(f"machine: {machine_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(
        f"model: VAR d{args.depth} at {args.image_size} px, L={length}, B={args.batch}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, {'forward + backward' if backward else 'forward only (CPU)'}"
    )
    print(
        f"dense mask: {mask_bytes / 2**20:,.0f} MiB float32 buffer"
        + (f" + {cast_bytes / 2**20:,.0f} MiB bf16 copy per forward" if cast_bytes else "")
        + f"; flex block mask skips {skipped:.0f} % of the {tiles} x {tiles} tiles of 128 x 128"
    )
    modes = ("dense", "flex")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    peaks = dict.fromkeys(modes, 0)
    for mode in modes:  # warm-up: cuDNN/SDPA selection, flex compilation
        step(mode)
    for _ in range(args.steps):  # the two paths alternate, so load from other processes hits both alike
        for mode in modes:
            seconds, peak = step(mode)
            times[mode].append(seconds)
            peaks[mode] = max(peaks[mode], peak)
    for mode in modes:
        best, mean = min(times[mode]), sum(times[mode]) / len(times[mode])
        line = f"{mode}{' (ref)' if mode == 'dense' else ''}: {best:.4f} s/step best, {mean:.4f} mean of {args.steps}"
        if device.type == "cuda":
            line += f", peak memory {peaks[mode] / 2**30:.2f} GiB"
        print(line)
    print(f"flex speed-up over dense: {min(times['dense']) / min(times['flex']):.2f}x")


if __name__ == "__main__":
    main()
