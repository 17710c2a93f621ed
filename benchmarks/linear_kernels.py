"""The fp32 path's two linear kernels side by side: the BLAS library's (PyTorch's default) and oneDNN's.

Usage:
    .venv/bin/python benchmarks/linear_kernels.py [--depth 16] [--threads 2] [--images 4] [--draws 256]
        [--model bundled:fashion-mnist]

1. **Speed of every product of a sampling call.** A d16-shaped call at B = 1 with CFG multiplies 2 x (tokens of
   the scale) rows by each block's q/k/v, attention-output, fc1 and fc2 weights, and by the head, at every
   scale (plus each block's AdaLN projection once per call). Each distinct product is timed with both kernels,
   alternating, over ``depth`` separate weight copies (so the weights stream from memory as in a real call
   rather than sitting in cache); printed per product and row count: GFLOP/s of each and the ratio, and the
   call's whole linear work with each kernel.
2. **How often the kernel changes a sampled token.** Both kernels compute float32 products but add the terms in
   a different order, so logits differ in their last bits. For ``--images`` images sampled from the model
   (random d16 weights by default, or ``--model``; cfg 1.5, top-k 900, top-p 0.96), the teacher-forced logits of
   the conditional and the unconditional half are computed with each kernel, guided with the scale's CFG
   weight and filtered exactly as the sampler does; then every token is drawn ``--draws`` times from each
   kernel's distribution **with the same random numbers** (so a difference can only come from the logits).
   Printed: the largest logit difference and the share of draws that picked a different token.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from machine import machine_name, matmul_peak_flops

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.linear_kernels import OneDNNLinears, onednn_linear_available
from nextscale.sampling.logits import classifier_free_guidance, filter_logits, sample_tokens
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

KNOBS = dict(cfg=1.5, top_k=900, top_p=0.96)


def call_products(config, batch: int) -> list[tuple[str, int, int, int, int]]:
    """(name, rows, in, out, times per call) of every linear product of one guided sampling call."""
    width, hidden, rows_per_token = config.embed_dim, int(config.embed_dim * config.mlp_ratio), 2 * batch
    products = [("adaln", rows_per_token, width, 6 * width, config.depth)]
    for count in config.schedule.token_counts:
        rows = rows_per_token * count
        for name, n_in, n_out in (("qkv", width, 3 * width), ("proj", width, width), ("fc1", width, hidden)):
            products.append((name, rows, n_in, n_out, config.depth))
        products.append(("fc2", rows, hidden, width, config.depth))
        products.append(("head", rows, width, config.vocab_size, 1))
    return products


def time_product(rows: int, n_in: int, n_out: int, copies: int, repeats: int) -> dict[str, float]:
    """Best seconds of one pass over ``copies`` weights of this shape, per kernel (alternating)."""
    weights = [torch.randn(n_out, n_in) for _ in range(copies)]
    bias, x = torch.randn(n_out), torch.randn(rows, n_in)
    best = {"blas": math.inf, "onednn": math.inf}
    for attempt in range(repeats + 1):
        for kernel in best:
            with OneDNNLinears() if kernel == "onednn" else torch.no_grad():
                start = time.perf_counter()
                for weight in weights:
                    F.linear(x, weight, bias)
                seconds = time.perf_counter() - start
            if attempt:
                best[kernel] = min(best[kernel], seconds)
    return {kernel: seconds / copies for kernel, seconds in best.items()}


def speed_table(config, repeats: int) -> None:
    print("\n## 1. every linear product of a guided B = 1 call, both kernels (GFLOP/s, best of", repeats, ")")
    print("| product | rows | in -> out | per call | BLAS GFLOP/s | oneDNN GFLOP/s | oneDNN vs BLAS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    totals = {"blas": 0.0, "onednn": 0.0}
    flops_total = 0.0
    with torch.no_grad():
        for name, rows, n_in, n_out, times in call_products(config, batch=1):
            seconds = time_product(rows, n_in, n_out, copies=min(times, config.depth), repeats=repeats)
            flops = 2 * rows * n_in * n_out
            flops_total += flops * times
            for kernel in totals:
                totals[kernel] += seconds[kernel] * times
            print(
                f"| {name} | {rows} | {n_in} -> {n_out} | {times} | {flops / seconds['blas'] / 1e9:.0f} | "
                f"{flops / seconds['onednn'] / 1e9:.0f} | {seconds['blas'] / seconds['onednn']:.2f}x |"
            )
    print(
        f"\nall linear products of the call: BLAS {totals['blas']:.2f} s ({flops_total / totals['blas'] / 1e9:.0f} "
        f"GFLOP/s), oneDNN {totals['onednn']:.2f} s ({flops_total / totals['onednn'] / 1e9:.0f} GFLOP/s): "
        f"**{totals['blas'] / totals['onednn']:.2f}x**"
    )


def teacher_logits(pipe: Pipeline, tokens: torch.Tensor, labels: torch.Tensor, onednn: bool) -> torch.Tensor:
    """(2B, L, V) teacher-forced logits of the sampled tokens: rows [0, B) conditional, [B, 2B) the null class."""
    schedule = pipe.transformer.config.schedule
    maps = [tokens[:, schedule.offsets[k] : schedule.offsets[k + 1]] for k in range(schedule.num_scales)]
    teacher = pipe.tokenizer.quantizer.teacher_forcing_input(maps)  # (B, L - 1, code_dim)
    null = torch.full_like(labels, pipe.transformer.config.num_classes)
    with torch.no_grad(), OneDNNLinears() if onednn else torch.no_grad():
        return pipe.transformer(torch.cat((labels, null)), teacher.repeat(2, 1, 1))


def agreement(pipe: Pipeline, images: int, draws: int) -> None:
    config = SamplingConfig(**KNOBS)
    schedule = pipe.transformer.config.schedule
    num_classes = pipe.transformer.config.num_classes
    labels = torch.arange(images) % num_classes
    out = pipe.use_precision("fp32", linear_kernel="blas")(class_labels=labels.tolist(), seed=0, output_type="pt")
    logits = {kernel: teacher_logits(pipe, out.tokens, labels, kernel == "onednn") for kernel in ("blas", "onednn")}
    largest = (logits["blas"] - logits["onednn"]).abs().max().item()
    scale = logits["blas"].abs().max().item()
    differing = total = 0
    for k in range(schedule.num_scales):
        span = slice(schedule.offsets[k], schedule.offsets[k + 1])
        settings = config.settings(k, schedule.num_scales)
        filtered = {}
        for kernel, both in logits.items():
            guided = classifier_free_guidance(both[:images, span], both[images:, span], settings.cfg_weight)
            filtered[kernel] = filter_logits(guided, settings.top_k, settings.top_p, settings.temperature)
        picks = {
            kernel: sample_tokens(value, torch.Generator().manual_seed(k), num_samples=draws)
            for kernel, value in filtered.items()
        }
        differing += (picks["blas"] != picks["onednn"]).sum().item()
        total += picks["blas"].numel()
    bound = 3.0 / total  # no difference in n draws: below 3/n at 95 % confidence (the rule of three)
    share = f"{differing / total:.2e}" if differing else f"0 (below {bound:.1e} at 95 % confidence)"
    print(
        f"\n## 2. token agreement: {images} images x {schedule.offsets[-1]} tokens x {draws} draws = {total:,} "
        f"coupled draws\nlargest logit difference {largest:.2e} (logits up to {scale:.1f}); draws that picked "
        f"another token: {differing} of {total:,} = {share}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=4, help="images whose tokens are redrawn (0: skip part 2)")
    parser.add_argument("--draws", type=int, default=256, help="coupled draws per token")
    parser.add_argument("--model", default=None, help="a pipeline for part 2 (default: random d{depth} weights)")
    args = parser.parse_args()
    if not onednn_linear_available():
        raise SystemExit("this PyTorch build has no oneDNN linear operator")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(
        f"machine: {machine_name(device)}, {args.threads} threads, torch {torch.__version__}; fp32 matmul peak "
        f"{matmul_peak_flops(device, torch.float32) / 1e9:.1f} GFLOP/s"
    )
    torch.manual_seed(0)
    tokenizer_config, transformer_config = var(args.depth)
    speed_table(transformer_config, args.repeats)
    if args.images:
        if args.model:
            pipe = Pipeline.from_pretrained(args.model)
        else:
            transformer = ScaleTransformer(transformer_config).eval()
            pipe = Pipeline(MultiScaleVQVAE(tokenizer_config).eval(), transformer)
        print(f"\nmodel for part 2: {args.model or f'random d{args.depth}'}")
        agreement(pipe, args.images, args.draws)


if __name__ == "__main__":
    main()
