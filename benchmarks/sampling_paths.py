"""Side by side in one run: the official sampler's steps (reference), the exact float32 path and the fast path.

Usage:
    .venv/bin/python benchmarks/sampling_paths.py [--depth 16] [--batch 1 8] [--repeats 2] [--threads 2]
        [--paths reference exact auto] [--device cpu]

One d16-shaped model with random weights (VAR's 256 px tokenizer, ch160, and transformer), the same labels and
seed for every path, cfg 1.5, top-k 900, top-p 0.96, each call from labels to images **including the VQ-VAE
decode**. Paths:

- ``reference``: ``reference_sampler.reference_sample``, what the official sampler does (eager float32, AdaLN
  re-evaluated at every scale, a KV cache grown by concatenation, NCHW decode). It runs in a worker process of
  its own, started fresh with the same seed (so the same weights: the identity checks below prove it), so that
  it allocates memory with the C library's default behaviour, as the official code would; the pipelines in this
  process keep freed memory between calls (``nextscale.sampling.cpu_memory``). Its calls still alternate with
  the others' on the same cores; its time is measured inside the worker.
- ``exact``: ``Pipeline`` in float32 (AdaLN memoised per call, one preallocated KV cache reused across calls).
  It must draw the same tokens and produce bit-identical images; the script checks and prints it.
- ``fp32-onednn``: the exact path with its linear products in oneDNN instead of the BLAS library
  (``nextscale.sampling.linear_kernels``): float32 numerics in another summation order, so not bit-exact.
- ``auto`` (or ``bf16``, ``int8``): ``Pipeline.use_precision(NAME)`` on copies of the same weights; ``auto``
  names what it picked and why. Its tokens differ from float32 in some draws; the share of equal tokens is
  printed (quality: ``nextscale evaluate --dtype``).
- ``NAME+fused`` (``exact+fused``, ``int8+fused``, ...): path NAME on copies of the weights with the fused
  elementwise kernels (``Pipeline.use_fused_kernels``, ``nextscale.layers.fused``); compiled in the warm-up call.

Calls alternate path by path (rotating which goes first) after one warm-up call per path, so a busy machine
slows every path alike. Printed per path and batch: best and mean seconds, images/s, speed-up of the best over
the reference's best, matmul + convolution work in GFLOP and the achieved rate against the matmul peak
measured in this run (float32; bf16 as well where the path uses it), peak memory, and the identity checks.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import time

import torch
from machine import benchmark_device, machine_name, matmul_peak_flops, peak_memory, reset_peak_memory, synchronize
from reference_sampler import reference_sample
from sampling_speed import sampling_flops

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.precision import PRECISIONS, choose_precision
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

KNOBS = dict(cfg=1.5, top_k=900, top_p=0.96)
# The in-process paths (each also as NAME+fused); "exact" is use_precision("fp32") under its own name.
PATH_BASES = ("exact", "fp32-onednn", *(name for name in PRECISIONS if name != "fp32"))


def decoder_flops(tokenizer: MultiScaleVQVAE, batch: int, device: torch.device) -> float:
    """Multiply-add FLOPs of the decoder's convolutions and attention products for one batch, counted by hooks."""
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += 2 * output.numel() * module.in_channels * k / module.groups

    handles = [m.register_forward_hook(count) for m in tokenizer.modules() if isinstance(m, torch.nn.Conv2d)]
    side = tokenizer.config.scale_sides[-1]
    with torch.no_grad():
        tokenizer.decode_fhat(torch.zeros(batch, tokenizer.config.code_dim, side, side, device=device))
    for handle in handles:
        handle.remove()
    return total


def build_models(depth: int, device: torch.device) -> tuple[MultiScaleVQVAE, ScaleTransformer]:
    """The random-weight tokenizer and transformer (seeded: the worker builds the very same weights)."""
    torch.manual_seed(0)
    tokenizer_config, transformer_config = var(depth)
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval().to(device)
    return tokenizer, ScaleTransformer(transformer_config).eval().to(device)


def reference_worker(connection, depth: int, threads: int, device: str) -> None:
    """Serve reference calls: receive (labels, seed), send (seconds, tokens, images, peak memory); None stops."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    tokenizer, transformer = build_models(depth, device)
    config = SamplingConfig(**KNOBS)
    while (request := connection.recv()) is not None:
        labels, seed = request
        was_reset = reset_peak_memory(device)
        synchronize(device)
        start = time.perf_counter()
        tokens, images = reference_sample(
            tokenizer, transformer, labels, config, torch.Generator(device).manual_seed(seed)
        )
        synchronize(device)
        seconds = time.perf_counter() - start
        memory = peak_memory(device, was_reset)
        connection.send((seconds, tokens.cpu(), images.cpu(), memory))


class ReferenceProcess:
    """The reference path in a spawned worker process (see the module docstring)."""

    def __init__(self, depth: int, threads: int, device: torch.device) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        # A daemon: when the benchmark fails, the worker (blocked waiting for a request) ends with it rather than
        # keeping the failed run alive until an outside time limit kills it.
        self.process = context.Process(target=reference_worker, args=(child, depth, threads, str(device)), daemon=True)
        self.process.start()

    def __call__(self, labels: list[int], seed: int) -> tuple[float, torch.Tensor, torch.Tensor, str]:
        self.connection.send((labels, seed))
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(None)
        self.process.join()


def check_path_names(names: list[str], device: torch.device) -> str | None:
    """What is wrong with ``--paths`` on ``device`` (one line), or None: checked before any model is built."""
    if not names or names[0] != "reference":
        return "--paths must start with reference (every ratio is taken against it)"
    for name in names[1:]:
        base = name.removesuffix("+fused")
        if base not in PATH_BASES:
            return f"--paths: unknown path {name!r}; choose from {', '.join(PATH_BASES)}, each also as NAME+fused"
        if base in PRECISIONS:
            try:
                choose_precision(base, device)
            except ValueError as err:
                return f"--paths {name}: {err}"
    return None


def build_paths(names: list[str], tokenizer, transformer) -> dict:
    """name -> (callable(labels, seed) -> (tokens, images), precision name, reason) for the in-process paths."""
    paths = {}
    for name in names:
        base, fused = name.removesuffix("+fused"), name.endswith("+fused")  # "+fused": with fused kernels
        # Float32 paths without fused kernels leave the weights and the switch untouched, so they share the
        # models; the others get copies (casting or quantising changes the weights, the switch is per model).
        shared = base in ("exact", "fp32-onednn") and not fused
        models = (tokenizer, transformer) if shared else (copy.deepcopy(tokenizer), copy.deepcopy(transformer))
        if base == "exact":
            pipe = Pipeline(*models).use_precision("fp32")
        elif base == "fp32-onednn":
            pipe = Pipeline(*models).use_precision("fp32", linear_kernel="onednn")
        else:
            pipe = Pipeline(*models).use_precision(base)
        pipe.use_fused_kernels(fused)

        def run(labels, seed, pipe=pipe):
            out = pipe(class_labels=labels, seed=seed, output_type="pt", **KNOBS)
            return out.tokens, out.images

        paths[name] = (run, pipe.precision.name, pipe.precision.reason)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per path and batch (after a warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--paths", nargs="+", default=["reference", "exact", "auto"], help="reference first, then the paths above"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = benchmark_device(args.device)
    if problem := check_path_names(args.paths, device):
        parser.error(problem)
    torch.set_num_threads(args.threads)
    reference = ReferenceProcess(args.depth, args.threads, device)
    tokenizer, transformer = build_models(args.depth, device)
    tokenizer_config, transformer_config = tokenizer.config, transformer.config
    paths = {"reference": (None, "fp32", "the official sampler's steps, in a worker process")}
    paths.update(build_paths(args.paths[1:], tokenizer, transformer))
    reference([0], 0)  # warm-up (first-call allocations and kernel choices); returns once the worker is built
    for name in args.paths[1:]:
        paths[name][0]([0], 0)
    peaks = {"fp32": matmul_peak_flops(device, torch.float32) / 1e9}  # measured with the worker idle
    if any(precision in ("bf16", "fp16") for _, precision, _ in paths.values()):
        peaks["bf16"] = matmul_peak_flops(device, torch.bfloat16) / 1e9
    print(
        f"machine: {machine_name(device)}, {torch.get_num_threads()} threads, torch {torch.__version__}; matmul "
        + ", ".join(f"{dtype} peak {value:.1f} GFLOP/s" for dtype, value in peaks.items())
    )
    print(
        f"model: VAR d{args.depth} ({sum(p.numel() for p in transformer.parameters()) / 1e6:.1f}M params, random "
        f"weights), tokenizer {sum(p.numel() for p in tokenizer.parameters()) / 1e6:.1f}M params, "
        f"{tokenizer_config.image_size} px, cfg 1.5, top-k 900, top-p 0.96, decode included"
    )
    for name, (_, precision, reason) in paths.items():
        print(f"path {name}: {precision} ({reason})")
    for batch in args.batch:
        labels = [i % transformer_config.num_classes for i in range(batch)]
        gflop = (sampling_flops(transformer_config, batch, guided=True) + decoder_flops(tokenizer, batch, device)) / 1e9
        times = {name: [] for name in paths}
        outputs, memory = {}, {}
        names = list(paths)
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                if name == "reference":
                    seconds, tokens, images, memory[name] = reference(labels, 0)
                    outputs[name] = (tokens.to(device), images.to(device))
                    times[name].append(seconds)
                    continue
                was_reset = reset_peak_memory(device)
                synchronize(device)
                start = time.perf_counter()
                outputs[name] = paths[name][0](labels, 0)
                synchronize(device)
                times[name].append(time.perf_counter() - start)
                memory[name] = peak_memory(device, was_reset)
        ref_best = min(times["reference"])
        ref_tokens, ref_images = outputs["reference"]
        print(f"\nB={batch}: {gflop:.0f} GFLOP per call (transformer matmuls + decoder convolutions)")
        for name in paths:
            best, mean = min(times[name]), sum(times[name]) / len(times[name])
            tokens, images = outputs[name]
            rate = gflop / best
            shares = ", ".join(f"{rate / peak:.0%} of the {dtype} peak" for dtype, peak in peaks.items())
            same_tokens = tokens.eq(ref_tokens).float().mean().item()
            image_check = (
                "images bit-identical"
                if torch.equal(images, ref_images)
                else f"images max |diff| {(images.float() - ref_images).abs().max().item():.2g}"
            )
            print(
                f"  {name:<11} best {best:7.2f} s  mean {mean:7.2f} s  {batch / best:6.2f} img/s  "
                f"x{ref_best / best:.2f} vs reference  {rate:6.1f} GFLOP/s ({shares})  peak {memory[name]}  "
                f"tokens equal to reference {same_tokens:.1%}, {image_check}"
            )
    reference.close()


if __name__ == "__main__":
    main()
