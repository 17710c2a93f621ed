"""The d16 sampling loop with its transformer steps replayed as CUDA graphs, against the eager steps, on one GPU.

Usage:
    python benchmarks/cuda_graph_speed.py [--batch 1 8 64] [--bf16] [--repeats 5]

A d16-shaped VAR with random weights (``presets.var(16)``), cfg 1.5, top-k 900, top-p 0.96. Per batch size the
paths run in the same process, alternating call by call: (a) ``eager``, ``TransformerSteps`` (the reference),
and (b) ``cuda graphs``, ``CudaGraphSteps`` (one captured graph per scale). Prints per path the best of
``--repeats`` seconds per sampling call, the speed-up over (a), whether every call's tokens equal (a)'s for the
same seed (fp32: must be True), and the peak GPU memory of the path's first call from a clean state (weights,
kept KV cache and, for (b), the capture included), with that first call's seconds.

There is no ``torch.compile(mode="reduce-overhead")`` path, because it does not work simply on this step:
the step writes the KV cache in place, and inductor's CUDA graphs skip a function that mutates an input that
is not a parameter ("skipping cudagraphs due to mutated inputs"); the scale is chosen by the cache's Python
``length``, so dynamo compiles one graph per scale (10 at 256 px, over its default recompile limit of 8); and
the AdaLN memo is a dict filled at scale 0 and read later, a side effect whose tensors would be outputs that
the next CUDA-graph replay may overwrite.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import machine_name, synchronize

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--bf16", action="store_true", help="run both paths under bf16 autocast")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path and batch size")
    args = parser.parse_args()
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
    config = SamplingConfig(cfg=1.5, top_k=900, top_p=0.96)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16)
    print(
        f"machine: {machine_name(device)}, torch {torch.__version__}; VAR d16, "
        f"{'bf16 autocast' if args.bf16 else 'fp32'}, cfg 1.5, top-k 900, top-p 0.96"
    )

    def sample(sampler: ScaleSampler, labels: list[int]) -> tuple[float, torch.Tensor]:
        """One timed sampling call: (seconds, tokens)."""
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            tokens = sampler.sample(labels, config=config, generator=torch.Generator(device).manual_seed(0)).tokens
        synchronize(device)
        return time.perf_counter() - start, tokens

    for batch in args.batch:
        labels = list(range(batch))
        first_s, peak_gib = {}, {}
        for name, sampler in samplers.items():  # one path at a time, from a clean state
            for each in samplers.values():
                each.steps.release()
            torch.cuda.reset_peak_memory_stats(device)
            first_s[name], _ = sample(sampler, labels)
            peak_gib[name] = torch.cuda.max_memory_allocated(device) / 2**30
        best = dict.fromkeys(samplers, float("inf"))
        tokens = {name: [] for name in samplers}
        for _ in range(args.repeats):
            for name, sampler in samplers.items():
                seconds, result = sample(sampler, labels)
                best[name] = min(best[name], seconds)
                tokens[name].append(result)
        for name in samplers:
            identical = all(torch.equal(a, b) for a, b in zip(tokens[name], tokens["eager"]))
            print(
                f"B={batch} {name:>11}: best {best[name]:.4f} s ({best['eager'] / best[name]:.2f}x), "
                f"tokens identical: {identical}, peak memory {peak_gib[name]:.2f} GiB, first call {first_s[name]:.2f} s"
            )


if __name__ == "__main__":
    main()
