"""The d16 sampling loop with its transformer steps replayed as CUDA graphs, against the eager steps, on one GPU.

Usage:
    python benchmarks/cuda_graph_speed.py [--batch 1 8 64] [--bf16 | --fast] [--decode] [--repeats 5] [--no-fused]
        [--threads 2]

A d16-shaped VAR with random weights (``presets.var(16)``), cfg 1.5, top-k 900, top-p 0.96. Per batch size the
paths run in the same process, alternating call by call: (a) ``eager``, ``TransformerSteps`` (the reference),
and (b) ``cuda graphs``, ``CudaGraphSteps`` (one captured graph per scale). Prints per path the best of
``--repeats`` seconds per sampling call, the speed-up over (a), whether every call's tokens equal (a)'s for the
same seed (fp32: must be True), and the peak GPU memory of the path's first call from a clean state (weights,
kept KV cache and, for (b), the capture included), with that first call's seconds.

``--fast`` keeps (a) and (b) in float32 and adds the fast path as a pipeline runs it with ``dtype="bf16"``: (c)
eager and (d) CUDA-graph steps of a copy of the transformer whose linear weights are cast to bf16 once
(``cast_linear_weights``), under bf16 autocast, all against (a); its tokens are compared with (a)'s as a share.
It also adds the fused elementwise kernels (``use_fused_kernels``, ``nextscale.layers.fused``): (e) fp32 CUDA
graphs, and (f) eager and (g) CUDA graphs of the bf16 copy, with fused kernels (``--no-fused`` leaves them out).
A path whose first call fails (no triton, say) is reported and dropped; the others go on.
``--decode`` adds the tokenizer's decode to every call (under the path's autocast), as an image call has it.

There is no ``torch.compile(mode="reduce-overhead")`` path, because it does not work simply on this step:
the step writes the KV cache in place, and inductor's CUDA graphs skip a function that mutates an input that
is not a parameter ("skipping cudagraphs due to mutated inputs"); the scale is chosen by the cache's Python
``length``, so dynamo compiles one graph per scale (10 at 256 px, over its default recompile limit of 8); and
the AdaLN memo is a dict filled at scale 0 and read later, a side effect whose tensors would be outputs that
the next CUDA-graph replay may overwrite.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from machine import add_threads_argument, machine_name, set_threads, synchronize

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.precision import cast_linear_weights
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="run both paths under bf16 autocast")
    precision.add_argument(
        "--fast", action="store_true", help="also the bf16 fast path (weights cast once), eager and graphs, vs fp32"
    )
    parser.add_argument("--decode", action="store_true", help="include the tokenizer's decode in every call")
    parser.add_argument("--no-fused", action="store_true", help="with --fast, leave out the fused-kernel paths")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path and batch size")
    add_threads_argument(parser)  # the CPU threads that launch the kernels and run the sampler's host code
    args = parser.parse_args()
    threads = set_threads(args)
    if not torch.cuda.is_available():
        raise SystemExit("cuda_graph_speed.py needs a CUDA GPU, and this machine has none")
    device = torch.device("cuda")
    torch.manual_seed(0)
    tokenizer_config, transformer_config = var(16)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval().to(device)
    transformer = ScaleTransformer(transformer_config).eval().to(device)
    samplers = {
        "eager": ScaleSampler(tokenizer, transformer),
        "cuda graphs": ScaleSampler(tokenizer, transformer, cuda_graphs=True),
    }
    bf16_paths = set(samplers) if args.bf16 else set()
    if args.fast:  # what Pipeline.from_pretrained(..., dtype="bf16") runs: linear weights cast once, autocast
        fast = copy.deepcopy(transformer)
        cast_linear_weights(fast, torch.bfloat16)
        samplers["bf16 eager"] = ScaleSampler(tokenizer, fast)
        samplers["bf16 graphs"] = ScaleSampler(tokenizer, fast, cuda_graphs=True)
        bf16_paths = {"bf16 eager", "bf16 graphs"}
        if not args.no_fused:
            fused = copy.deepcopy(transformer).use_fused_kernels()
            samplers["fused graphs"] = ScaleSampler(tokenizer, fused, cuda_graphs=True)
            fast_fused = copy.deepcopy(fast).use_fused_kernels()
            samplers["bf16 fused eager"] = ScaleSampler(tokenizer, fast_fused)
            samplers["bf16 fused graphs"] = ScaleSampler(tokenizer, fast_fused, cuda_graphs=True)
            bf16_paths |= {"bf16 fused eager", "bf16 fused graphs"}
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    precision = "bf16 autocast" if args.bf16 else "fp32, and bf16 weights + autocast" if args.fast else "fp32"
    print(
        f"machine: {machine_name(device)}, {threads} CPU threads, torch {torch.__version__}; VAR d16, {precision}, "
        f"cfg 1.5, top-k 900, top-p 0.96, {'decode included' if args.decode else 'tokens only'}"
    )

    def sample(name: str, labels: list[int]) -> tuple[float, torch.Tensor]:
        """One timed sampling call of path ``name``: (seconds, tokens)."""
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=name in bf16_paths):
            out = samplers[name].sample(labels, config=config, generator=torch.Generator(device).manual_seed(0))
            if args.decode:
                tokenizer.decode_fhat(out.f_hat)
        synchronize(device)
        return time.perf_counter() - start, out.tokens

    for batch in args.batch:
        labels = list(range(batch))
        first_s, peak_gib = {}, {}
        for name in list(samplers):  # one path at a time, from a clean state
            for each in samplers.values():
                each.steps.release()
            torch.cuda.reset_peak_memory_stats(device)
            try:
                first_s[name], _ = sample(name, labels)
            except Exception as error:  # report and go on with the other paths
                print(f"B={batch} {name}: first call failed, path dropped: {type(error).__name__}: {error}")
                del samplers[name]
                continue
            peak_gib[name] = torch.cuda.max_memory_allocated(device) / 2**30
        best = dict.fromkeys(samplers, float("inf"))
        tokens = {name: [] for name in samplers}
        for _ in range(args.repeats):
            for name in samplers:
                seconds, result = sample(name, labels)
                best[name] = min(best[name], seconds)
                tokens[name].append(result)
        for name in samplers:
            pairs = list(zip(tokens[name], tokens["eager"]))
            identical = all(torch.equal(a, b) for a, b in pairs)
            share = sum((a == b).float().mean().item() for a, b in pairs) / len(pairs)
            print(
                f"B={batch} {name:>17}: best {best[name]:.4f} s ({best['eager'] / best[name]:.2f}x), "
                f"tokens identical: {identical} ({share:.1%} equal), peak memory {peak_gib[name]:.2f} GiB, "
                f"first call {first_s[name]:.2f} s"
            )
        if args.decode:  # the decode's share of each call
            out = samplers["eager"].sample(labels, config=config, generator=torch.Generator(device).manual_seed(0))
            for bf16 in (False, True):
                times = []
                for _ in range(args.repeats):
                    synchronize(device)
                    start = time.perf_counter()
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                        tokenizer.decode_fhat(out.f_hat)
                    synchronize(device)
                    times.append(time.perf_counter() - start)
                print(f"B={batch} decode alone ({'bf16 autocast' if bf16 else 'fp32'}): best {min(times):.4f} s")


if __name__ == "__main__":
    main()
