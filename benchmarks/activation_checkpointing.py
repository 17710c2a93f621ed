"""Memory and time of one transformer training step with activation checkpointing (blocks recomputed in the
backward pass) against keeping every activation (the reference path), side by side in one run.

Usage:
    .venv/bin/python benchmarks/activation_checkpointing.py [--device cpu] [--depth 8] [--batch 4]
        [--image-size 256] [--steps 3] [--threads 2] [--bf16]

The model is ``ScaleTransformer(TransformerConfig.from_depth(depth))`` on the VAR scale schedule of
``--image-size`` (256, 512 or 1024 px; 256 px: 10 scales, L = 680 tokens; vocab 4096, code_dim 32, 1000 classes)
with random weights and inputs, in training mode (drop-path on). One step is forward + cross-entropy + backward
+ AdamW. The two paths run on copies of the same weights from the same random state and alternate step by step
(load from other processes hits both alike); the first step of each is a warm-up.

Printed per path: best and mean seconds per step, tokens/s; the bytes autograd holds for the backward pass at
the end of the forward (every tensor saved by a ``saved_tensors_hooks`` pack, counted exactly); and peak memory
of the step: ``torch.cuda.max_memory_allocated`` on CUDA, the rise of peak RSS over the RSS before the step on
a CPU. Also checked: both paths give the same loss and gradients (bit-identical in fp32).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import benchmark_device, machine_name, matmul_peak_flops, reset_cpu_peak, synchronize

from nextscale.scales import SIDES_256, SIDES_512, SIDES_1024
from nextscale.training.optim import build_adamw
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer

SIDES = {256: SIDES_256, 512: SIDES_512, 1024: SIDES_1024}


def current_rss() -> int:
    """Resident bytes of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Step:
    """One training step of one path on fixed random inputs; records time, saved bytes, peak memory, loss."""

    def __init__(self, model: ScaleTransformer, batch: int, bf16: bool, device: torch.device) -> None:
        config = model.config
        length = config.schedule.total_tokens
        generator = torch.Generator(device).manual_seed(0)
        self.labels = torch.randint(0, config.num_classes, (batch,), generator=generator, device=device)
        self.teacher = torch.randn(batch, length - 1, config.code_dim, generator=generator, device=device)
        self.targets = torch.randint(0, config.vocab_size, (batch, length), generator=generator, device=device)
        self.model, self.bf16, self.device = model.train(), bf16, device
        self.optimizer = build_adamw(model, lr=1e-4)
        self.seconds: list[float] = []
        self.saved_bytes = self.peak_bytes = 0
        self.first_loss: torch.Tensor | None = None
        self.first_grads: dict[str, torch.Tensor] = {}

    def __call__(self, seed: int) -> None:
        saved: list[int] = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
        else:
            reset_cpu_peak()
            before = current_rss()
        torch.manual_seed(seed)  # the same drop-path draws for both paths
        start = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(self.labels, self.teacher)  # (B, L, V) float32
            loss = F.cross_entropy(logits.flatten(0, 1), self.targets.flatten())
        loss.backward()
        if self.first_loss is None:  # kept to compare the paths' numbers
            self.first_loss = loss.detach().clone()
            self.first_grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        self.seconds.append(time.perf_counter() - start)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) - before
        else:
            peak = peak_rss() - before
        self.saved_bytes = max(self.saved_bytes, sum(saved))
        self.peak_bytes = max(self.peak_bytes, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, choices=sorted(SIDES), default=256, help="the VAR scale schedule")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per path (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the GPU recipe)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = benchmark_device(args.device)
    torch.manual_seed(0)
    config = TransformerConfig.from_depth(args.depth, scale_sides=SIDES[args.image_size])
    reference = ScaleTransformer(config).to(device)
    tokens = args.batch * config.schedule.total_tokens
    print(f"machine: {machine_name(device)}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    peak = matmul_peak_flops(device, torch.bfloat16 if args.bf16 else torch.float32)
    print(
        f"model: d{args.depth} width {config.embed_dim}, {sum(p.numel() for p in reference.parameters()) / 1e6:.1f}M "
        f"params, {args.image_size} px (L = {config.schedule.total_tokens}), B = {args.batch} ({tokens} tokens/step), "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}; matmul peak measured now {peak / 1e9:,.0f} GFLOP/s"
    )
    paths = {
        "keep activations (ref)": Step(copy.deepcopy(reference), args.batch, args.bf16, device),
        "activation checkpointing": Step(
            copy.deepcopy(reference).use_activation_checkpointing(), args.batch, args.bf16, device
        ),
    }
    del reference
    for index in range(args.steps + 1):  # the paths alternate step by step; step 0 is a warm-up
        for step in paths.values():
            step(seed=index)
    reference_step, recomputed_step = paths.values()
    same = torch.equal(reference_step.first_loss, recomputed_step.first_loss) and all(
        torch.equal(grad, recomputed_step.first_grads[name]) for name, grad in reference_step.first_grads.items()
    )
    memory_kind = "CUDA max allocated" if device.type == "cuda" else "rise of peak RSS"
    for name, step in paths.items():
        timed = step.seconds[1:]
        best, mean = min(timed), sum(timed) / len(timed)
        print(
            f"{name}: {best:.3f} s/step best, {mean:.3f} mean of {len(timed)}; {tokens / best:,.0f} tokens/s; "
            f"saved for backward {step.saved_bytes / 2**30:.3f} GiB; step peak ({memory_kind}) "
            f"{step.peak_bytes / 2**30:.3f} GiB"
        )
    print(
        f"activation checkpointing: saved-for-backward {reference_step.saved_bytes / recomputed_step.saved_bytes:.1f}x "
        f"smaller, step peak {reference_step.peak_bytes / max(recomputed_step.peak_bytes, 1):.2f}x smaller, "
        f"time {min(recomputed_step.seconds[1:]) / min(reference_step.seconds[1:]):.2f}x the reference; "
        f"first step's loss and gradients {'bit-identical' if same else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    main()
