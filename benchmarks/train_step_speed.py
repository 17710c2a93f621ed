"""Speed of one transformer training step (forward + backward + AdamW), fp32 and bf16 autocast side by side.

Usage:
    .venv/bin/python benchmarks/train_step_speed.py [--device cpu] [--depth 4] [--batch 16] [--steps 5]
        [--threads 2] [--peak-tflops X] [--shapes fashion|imagenet256] [--compile]

The model is ``ScaleTransformer(TransformerConfig.from_depth(depth, ...))`` on the bundled Fashion-MNIST
shapes (32 px, scales 1, 2, 3, 4, 6, 8 = 130 tokens, vocab 512, code_dim 16, 10 classes; ``--shapes imagenet256``:
VAR's 256 px shapes, 680 tokens, vocab 4096, code_dim 32, 1000 classes) with random
weights and random teacher-forcing inputs (B, L - 1, code_dim) and targets (B, L); the step is the one of
``TransformerTrainer.train_step`` without progressive training or label smoothing: cross-entropy over all
L tokens, backward, AdamW (``build_adamw``, fused on CUDA), zero_grad. fp32 eager is the reference path;
bf16 autocast runs on a fresh copy of the same initial weights in the same run.

Per precision: best and mean seconds/step over ``--steps`` steps after two warm-up steps (the two
precisions alternate step by step, so load from other processes hits both alike), tokens/s, and
achieved FLOP/s = 6 N tokens / seconds, where N counts the parameters applied to every token (the linear
layers outside AdaLN: word embedding, attention, FFN, head); the per-image AdaLN projections, embedding
tables and the attention score products are not counted (the last is printed as a share). The ratio is to
a matmul peak of the same dtype measured in this run; on CUDA MFU is also given against ``--peak-tflops``
(default: the datasheet dense peak of a known GPU, else the measured peak).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from machine import benchmark_device, machine_name, matmul_peak_flops, synchronize
from torch import nn

from nextscale.presets import FASHION_SIDES
from nextscale.scales import SIDES_256
from nextscale.training.optim import build_adamw
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer

# Dense (no sparsity) datasheet peaks in TFLOP/s: (fp32 without TF32, bf16 tensor cores), SXM parts.
DATASHEET_TFLOPS = {"H100": (67.0, 989.4), "H200": (67.0, 989.4), "A100": (19.5, 312.0)}


def per_token_params(model: nn.Module) -> int:
    """Parameters of the linear layers applied to every token (AdaLN projections act once per image)."""
    return sum(
        p.numel()
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and "adaln" not in name
        for p in module.parameters(recurse=False)
    )


def make_step(
    model: ScaleTransformer, batch: int, bf16: bool, device: torch.device, compiled: bool = False
) -> Callable[[], float]:
    """A function that runs one training step on fixed random inputs and returns its seconds (``compiled``: the
    forward through ``torch.compile``; the optimizer holds the same parameters)."""
    config = model.config
    length = config.schedule.total_tokens
    generator = torch.Generator(device).manual_seed(0)
    labels = torch.randint(0, config.num_classes, (batch,), generator=generator, device=device)
    teacher = torch.randn(batch, length - 1, config.code_dim, generator=generator, device=device)  # (B, L-1, C)
    targets = torch.randint(0, config.vocab_size, (batch, length), generator=generator, device=device)  # (B, L)
    optimizer = build_adamw(model, lr=1e-4)
    model.train()
    forward = torch.compile(model) if compiled else model

    def step() -> float:
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(labels, teacher)  # (B, L, V) float32
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 peak for MFU on CUDA (default: datasheet)")
    parser.add_argument(
        "--shapes",
        choices=("fashion", "imagenet256"),
        default="fashion",
        help="fashion: the bundled model's 32 px shapes (L = 130, V = 512); imagenet256: VAR's 256 px ImageNet "
        "shapes (L = 680, V = 4096, 1000 classes), what an MFU on a GPU should be read at",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile both models (as train --compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = benchmark_device(args.device)
    torch.manual_seed(0)
    if args.shapes == "imagenet256":
        config = TransformerConfig.from_depth(args.depth, scale_sides=SIDES_256)
    else:
        config = TransformerConfig.from_depth(
            args.depth, num_classes=10, vocab_size=512, code_dim=16, scale_sides=FASHION_SIDES
        )
    reference = ScaleTransformer(config).to(device)
    length = config.schedule.total_tokens
    tokens = args.batch * length
    n_token = per_token_params(reference)
    step_flops = 6 * n_token * tokens
    attention_flops = 3 * 4 * length * length * config.embed_dim * config.depth * args.batch  # fwd + 2x bwd
    machine = machine_name(device)
    print(f"machine: {machine}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    total_params = sum(p.numel() for p in reference.parameters())
    print(
        f"model: d{args.depth} width {config.embed_dim}, {total_params / 1e6:.2f}M "
        f"params ({n_token / 1e6:.2f}M per token), L={length}, B={args.batch} ({tokens} tokens/step), "
        f"6*N*tokens = {step_flops / 1e9:.1f} GFLOP/step "
        f"(attention scores would add {attention_flops / step_flops:.0%})"
    )
    precisions = {"fp32": False, "bf16": True}
    peaks = {
        name: matmul_peak_flops(device, torch.bfloat16 if bf16 else torch.float32) for name, bf16 in precisions.items()
    }
    models = {name: copy.deepcopy(reference) for name in precisions}
    steps = {
        name: make_step(models[name], args.batch, bf16, device, compiled=args.compile)
        for name, bf16 in precisions.items()
    }
    times: dict[str, list[float]] = {name: [] for name in precisions}
    for index in range(args.steps + 2):  # two warm-up steps; the precisions alternate step by step
        for name, step in steps.items():
            seconds = step()
            if index >= 2:
                times[name].append(seconds)
    results = {}
    for name, bf16 in precisions.items():
        best, mean, peak = min(times[name]), sum(times[name]) / len(times[name]), peaks[name]
        results[name] = best
        achieved = step_flops / best
        line = (
            f"{name} {'(ref)' if not bf16 else 'autocast'}: {best:.3f} s/step best, {mean:.3f} mean of {args.steps}; "
            f"{tokens / best:,.0f} tokens/s; {achieved / 1e9:,.1f} GFLOP/s = {achieved / peak:.0%} of the "
            f"{peak / 1e9:,.0f} GFLOP/s {name} matmul peak measured now"
        )
        if device.type == "cuda":
            known = next((v for k, v in DATASHEET_TFLOPS.items() if k in machine), None)
            spec = args.peak_tflops * 1e12 if args.peak_tflops and bf16 else None
            spec = spec or (known[1 if bf16 else 0] * 1e12 if known else peak)
            line += f"; MFU {achieved / spec:.1%} of {spec / 1e12:,.1f} TFLOP/s"
        print(line)
    if device.type == "cuda":
        print(f"peak memory (both models): {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"bf16 autocast speed-up over fp32 (reference): {results['fp32'] / results['bf16']:.2f}x")


if __name__ == "__main__":
    main()
