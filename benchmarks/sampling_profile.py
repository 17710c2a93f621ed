"""Where a sampling call spends its time: the official sampler's steps and the exact path, profiled side by side.

Usage:
    .venv/bin/python benchmarks/sampling_profile.py [--depth 16] [--batch 1] [--threads 2]

The d16-shaped random-weight models of ``sampling_paths.py`` (256 px tokenizer, cfg 1.5, top-k 900, top-p 0.96,
decode included), one warm-up call per path, then one ``torch.profiler`` call each, in this order: the exact
path (``Pipeline`` in float32, which keeps freed memory between its calls), then the reference
(``reference_sampler.reference_sample``) after ``Pipeline.release_memory()``, so that it allocates with the C
library's defaults as the official code would. The two must draw the same tokens; the script checks it.

Every operator's own time falls in one of four groups: matrix products (``addmm``/``mm``/``bmm``), the
decoder's convolutions, attention (``scaled_dot_product_attention``) and everything else. The work of the
first two comes from the recorded shapes (every decoder convolution is stride 1 with "same" padding, so its
output has its input's size) and is set against the float32 matmul peak measured in the same run: a group
near the peak has nothing left to remove without changing the arithmetic, and the "reference - exact" column
shows what the exact path saved and where.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

import torch
from machine import machine_name, matmul_peak_flops
from reference_sampler import reference_sample
from sampling_paths import KNOBS, build_models
from torch.profiler import ProfilerActivity, profile

from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline

GROUPS = ("matrix products", "decoder convolutions", "attention", "everything else")
CONVOLUTION_KERNELS = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward")  # the leaves: FLOPs counted once


def group_of(name: str) -> str:
    if name in ("aten::addmm", "aten::mm", "aten::bmm"):
        return GROUPS[0]
    if name in CONVOLUTION_KERNELS or name == "aten::_convolution":
        return GROUPS[1]
    if "scaled_dot_product" in name:
        return GROUPS[2]
    return GROUPS[3]


def event_flops(name: str, shapes: list[list[int]]) -> float:
    """Multiply-add FLOPs of one matrix product or convolution from its input shapes (0 for anything else)."""
    if name == "aten::addmm":  # (bias, a (M, K), b (K, N))
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2.0 * m * k * n
    if name == "aten::mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2.0 * m * k * n
    if name == "aten::bmm":
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return 2.0 * b * m * k * n
    if name in CONVOLUTION_KERNELS:
        (batch, _, height, width), (out_ch, in_ch, kh, kw) = shapes[0], shapes[1]
        return 2.0 * batch * height * width * out_ch * in_ch * kh * kw
    return 0.0


def profile_call(run) -> tuple[float, dict[str, list[float]], object]:
    """Profile one call: its wall seconds, per group [own seconds, FLOPs], and what the call returned."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        result = run()
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for event in prof.events():
        entry = groups[group_of(event.name)]
        entry[0] += event.self_cpu_time_total / 1e6
        entry[1] += event_flops(event.name, event.input_shapes)
    wall = sum(entry[0] for entry in groups.values())
    return wall, groups, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    tokenizer, transformer = build_models(args.depth, device)
    pipe = Pipeline(tokenizer, transformer).use_precision("fp32")
    labels = [i % transformer.config.num_classes for i in range(args.batch)]
    config = SamplingConfig(**KNOBS)

    def exact():
        out = pipe(class_labels=labels, seed=0, output_type="pt", **KNOBS)
        return out.tokens

    def reference():
        return reference_sample(tokenizer, transformer, labels, config, torch.Generator().manual_seed(0))[0]

    exact()  # warm-ups: first-call allocations, kernel choices, the kept KV cache and heap
    reference()
    peak = matmul_peak_flops(device, torch.float32) / 1e9
    exact_wall, exact_groups, exact_tokens = profile_call(exact)
    pipe.release_memory()  # the reference allocates with the C library's defaults, as the official code would
    reference_wall, reference_groups, reference_tokens = profile_call(reference)
    same = torch.equal(exact_tokens, reference_tokens)

    print(
        f"machine: {machine_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"float32 matmul peak {peak:.1f} GFLOP/s (measured in this run)"
    )
    print(
        f"model: VAR d{args.depth} random weights, B={args.batch}, cfg 1.5, top-k 900, top-p 0.96, decode "
        f"included; tokens of the two paths equal: {same}"
    )
    print(
        f"operator time: reference {reference_wall:.2f} s, exact {exact_wall:.2f} s "
        f"({reference_wall / exact_wall:.2f}x)\n"
    )
    print(
        "| group | reference s | exact s | reference - exact s | exact share | GFLOP | exact GFLOP/s (share of peak) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in GROUPS:
        ref_s, _ = reference_groups[name]
        ex_s, flops = exact_groups[name]
        rate = f"{flops / 1e9 / ex_s:.1f} ({flops / 1e9 / ex_s / peak:.0%})" if flops and ex_s else "—"
        gflop = f"{flops / 1e9:.0f}" if flops else "—"
        print(
            f"| {name} | {ref_s:.3f} | {ex_s:.3f} | {ref_s - ex_s:+.3f} | {ex_s / exact_wall:.0%} | {gflop} | {rate} |"
        )
    bound = sum(exact_groups[g][1] for g in GROUPS[:2]) / 1e9 / peak
    print(
        f"\nthe matrix products and convolutions alone need {bound:.2f} s at the measured peak; "
        f"the exact call's operators take {exact_wall:.2f} s ({bound / exact_wall:.0%} of the way to that bound)"
    )
    if not same or not math.isfinite(exact_wall):
        raise SystemExit("the two paths drew different tokens")


if __name__ == "__main__":
    main()
