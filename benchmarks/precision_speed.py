"""Sampling speed of the bundled pipelines in each precision, side by side in one run (fp32 is the reference).

Usage:
    .venv/bin/python benchmarks/precision_speed.py [--batch 1 8 64] [--threads 2] [--repeats 2]

For each bundled model (class-conditional Fashion-MNIST, text-to-image scenes) and each precision this
machine can run (fp32, bf16 autocast, int8 dynamic quantisation on a CPU; fp32, bf16, fp16 on a GPU),
prints the best of ``--repeats`` timed calls (after a warm-up) per batch size, images/s, the speed-up over
fp32, and the share of tokens equal to fp32's for the same seed (reduced precision changes some draws).
The "auto" choice for this machine is printed first. Quality: ``nextscale evaluate ... --dtype NAME``.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import add_machine_arguments, machine_from_arguments, machine_name

from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.precision import choose_precision


def call(pipe: Pipeline, batch: int, seed: int = 0):
    if pipe.is_text_conditional:
        prompts = ["a bag in the top left and a sneaker in the bottom right"] * batch
        return pipe(prompt=prompts, seed=seed, cfg=3.0, top_k=10, output_type="pt")
    return pipe(class_labels=[i % pipe.num_classes for i in range(batch)], seed=seed, cfg=3.0, output_type="pt")


def best_seconds(pipe: Pipeline, batch: int, repeats: int) -> tuple[float, torch.Tensor]:
    call(pipe, batch)  # warm-up
    times, tokens = [], None
    for _ in range(repeats):
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        tokens = call(pipe, batch).tokens
        if pipe.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=2)
    add_machine_arguments(parser)
    args = parser.parse_args()
    device = machine_from_arguments(args)
    names = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16", "int8"]
    machine = machine_name(device)
    print(f"machine: {machine}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"auto here: {choose_precision('auto', device)}")
    for model in ("bundled:fashion-mnist", "bundled:scenes"):
        reference: dict[int, tuple[float, torch.Tensor]] = {}
        for name in names:
            pipe = Pipeline.from_pretrained(model, device=device, dtype=name)
            for batch in args.batch:
                seconds, tokens = best_seconds(pipe, batch, args.repeats)
                if name == "fp32":
                    reference[batch] = (seconds, tokens)
                base_seconds, base_tokens = reference[batch]
                same = tokens.eq(base_tokens).float().mean().item()
                print(
                    f"{model} {name:>4} B={batch:<3} {seconds:7.3f} s  {batch / seconds:8.1f} img/s  "
                    f"{base_seconds / seconds:5.2f}x fp32  tokens equal to fp32: {same:.1%}"
                )


if __name__ == "__main__":
    main()
