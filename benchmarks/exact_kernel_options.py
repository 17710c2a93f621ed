"""Three ways to run the exact fp32 path's kernels faster without changing their sums, measured: worth building?

Usage:
    .venv/bin/python benchmarks/exact_kernel_options.py [--depth 16 | --tiny] [--repeats 3] [--threads 2]
        [--end-to-end]

The exact path must give the official sampler's images bit for bit, so it may only change how the same
kernels are scheduled, never their summation order. Three such changes exist on a CPU:

1. **Linear products split by output columns over the two cores.** At the few rows of the early scales the
   BLAS library (MKL) gains little from its second thread. Each output element is one dot product over the
   input width, so the two column halves of ``x @ W.T`` can run as two single-threaded BLAS calls on two
   threads (MKL's thread-local thread count) and be concatenated. Measured for every product of a d16 B = 1
   guided call (the shapes of ``linear_kernels.call_products``, over ``depth`` weight copies so weights stream
   from memory): whether the halves equal the whole product bit for bit, and both times.
2. **Decoder convolutions on oneDNN's blocked layout.** PyTorch runs a float32 NCHW convolution in oneDNN by
   reordering its input to a blocked layout and its output back. On tensors kept in the blocked layout
   (``to_mkldnn``) the same primitive runs without the reorders. Measured for the 256 px tokenizer's convolution
   shapes: bit-identity and both times. (The decoder's group norms and activations have no blocked kernels, so
   the reorders would come back at every norm; this bounds what the layout could give.)
3. **Linear weights packed once for MKL** (``torch.ops.mkl._mkl_reorder_linear_weight``, the packed-GEMM
   format that PyTorch's inductor uses on frozen CPU graphs). An unpacked product repacks the weight in every
   call; a packed weight is read as it is. A packing fits one row count, so a sampler would keep one packed copy
   per scale's row count. Measured for the same products as (1): bit-identity with ``F.linear``, both times,
   and the size of a packed weight against the plain one. ``--end-to-end`` times whole B = 1 calls of the exact
   path with and without packed weights instead (from 8 rows on, where they were bit-identical), alternating in
   one process, and checks that the images stay bit-identical.

Printed per shape and in total over one call, with the machine, the threads and the fp32 matmul peak. The column
halves need exactly two threads (the default); with another ``--threads`` they are skipped, with a line saying so.
``--tiny`` measures the shapes of ``presets.tiny`` instead, in seconds: to check that the script runs.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import torch
import torch.nn.functional as F
from linear_kernels import call_products
from machine import TINY_PEAK_SIZE, add_threads_argument, machine_name, matmul_peak_flops, set_threads
from torch.overrides import TorchFunctionMode
from torch.utils import mkldnn as mkldnn_utils

from nextscale.presets import tiny, var
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


def mkl_thread_setter():
    """MKL's thread-local thread count (None where PyTorch is not built with MKL)."""
    library = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    setter = getattr(library, "mkl_set_num_threads_local", None)
    return None if setter is None else (lambda count: setter(ctypes.byref(ctypes.c_int(count))))


def best_seconds(repeats: int, function, *args) -> float:
    function(*args)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - start)
    return best


def each_weight(linear, x, weights, bias) -> None:
    for weight in weights:
        linear(x, weight, bias)


def column_split_linear(pool: ThreadPoolExecutor, x, weight, bias):
    """``F.linear`` as two single-threaded column halves on two threads (the caller's MKL count set to 1)."""
    half = weight.shape[0] // 2
    first = pool.submit(F.linear, x, weight[:half], bias[:half])
    second = F.linear(x, weight[half:], bias[half:])
    return torch.cat([first.result(), second], dim=1)


def linear_products(config, repeats: int, set_mkl_threads) -> tuple[float, float, float, bool]:
    """Both kernels on every linear product of a B = 1 call of the transformer ``config``: the totals in seconds
    (MKL, column halves, the faster per shape) and whether every product's halves were bit-identical."""
    depth = config.depth
    pool = ThreadPoolExecutor(1, initializer=set_mkl_threads, initargs=(1,))
    total_blas = total_split = total_best = 0.0
    all_equal = True
    print("| product | rows | in -> out | MKL 2 threads ms | column halves ms | ratio | bit-identical |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rows, n_in, n_out, times in call_products(config, batch=1):
        weights = [torch.randn(n_out, n_in) * 0.02 for _ in range(depth)]
        bias, x = torch.randn(n_out) * 0.02, torch.randn(rows, n_in)
        equal = all(torch.equal(F.linear(x, w, bias), column_split_linear(pool, x, w, bias)) for w in weights[:2])
        blas = best_seconds(repeats, each_weight, F.linear, x, weights, bias) / depth
        set_mkl_threads(1)
        split = best_seconds(repeats, each_weight, partial(column_split_linear, pool), x, weights, bias) / depth
        set_mkl_threads(0)  # back to the process-wide count
        total_blas, total_split = total_blas + blas * times, total_split + split * times
        total_best += min(blas, split) * times
        all_equal &= equal
        print(
            f"| {name} | {rows} | {n_in} -> {n_out} | {blas * 1e3:.2f} | {split * 1e3:.2f} | {blas / split:.2f}x | "
            f"{equal} |"
        )
    pool.shutdown()
    return total_blas, total_split, total_best, all_equal


def packed_products(config, repeats: int) -> tuple[float, float, bool, bool]:
    """MKL on plain weights vs on weights packed for each product's row count, alternating: the totals in seconds
    over a B = 1 call, whether the products from 8 rows on and at 2 rows were bit-identical (in that order)."""
    depth = config.depth
    total_plain = total_packed = 0.0
    equal_from_8 = equal_at_2 = True
    print("\n| product | rows | in -> out | MKL ms | packed ms | ratio | bit-identical | packed size |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, rows, n_in, n_out, times in call_products(config, batch=1):
        copies = min(times, depth)
        weights = [torch.randn(n_out, n_in) * 0.02 for _ in range(copies)]
        bias, x = torch.randn(n_out) * 0.02, torch.randn(rows, n_in)
        packed = [torch.ops.mkl._mkl_reorder_linear_weight(weight, rows) for weight in weights]

        def run_packed(x=x, packed=packed, weights=weights, bias=bias, rows=rows):
            for packed_weight, weight in zip(packed, weights):
                torch.ops.mkl._mkl_linear(x, packed_weight, weight, bias, rows)

        equal = all(
            torch.equal(F.linear(x, weight, bias), torch.ops.mkl._mkl_linear(x, packed_weight, weight, bias, rows))
            for packed_weight, weight in zip(packed[:2], weights[:2])
        )
        plain = packed_best = math.inf
        for _ in range(repeats):  # alternating, so that the machine's load hits both alike
            plain = min(plain, best_seconds(1, each_weight, F.linear, x, weights, bias) / copies)
            packed_best = min(packed_best, best_seconds(1, run_packed) / copies)
        total_plain, total_packed = total_plain + plain * times, total_packed + packed_best * times
        if rows >= 8:
            equal_from_8 &= equal
        else:
            equal_at_2 &= equal
        print(
            f"| {name} | {rows} | {n_in} -> {n_out} | {plain * 1e3:.2f} | {packed_best * 1e3:.2f} | "
            f"{plain / packed_best:.2f}x | {equal} | {packed[0].numel() / weights[0].numel():.2f}x |"
        )
    return total_plain, total_packed, equal_from_8, equal_at_2


class PackedLinears(TorchFunctionMode):
    """Inside its ``with`` block, float32 linear products of 8 rows or more use a weight packed once for MKL (the
    first call with a weight packs it; the copies are kept, keyed by the weight's address)."""

    MIN_ROWS = 8  # below, MKL's plain product takes another path whose bits the packed one does not give

    def __init__(self) -> None:
        super().__init__()
        self.packed: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight, bias = args[0], args[1], args[2] if len(args) > 2 else kwargs.get("bias")
            rows = x.numel() // x.shape[-1]
            if rows >= self.MIN_ROWS and x.dtype == weight.dtype == torch.float32 and weight.dim() == 2:
                packed = self.packed.get(weight.data_ptr())
                if packed is None:
                    packed = self.packed[weight.data_ptr()] = torch.ops.mkl._mkl_reorder_linear_weight(
                        weight, self.MIN_ROWS
                    )
                out = torch.ops.mkl._mkl_linear(x.reshape(rows, x.shape[-1]), packed, weight, bias, rows)
                return out.view(*x.shape[:-1], weight.shape[0])
        return func(*args, **kwargs)


def end_to_end(tokenizer_config, transformer_config, repeats: int) -> None:
    """Whole B = 1 calls of the exact path with plain and packed weights, alternating (the first path rotating);
    the images must stay bit-identical."""
    torch.manual_seed(0)
    pipe = Pipeline(MultiScaleVQVAE(tokenizer_config).eval(), ScaleTransformer(transformer_config).eval())
    pipe.use_precision("fp32")
    packed_linears = PackedLinears()
    knobs = dict(cfg=1.5, top_k=900, top_p=0.96)

    def call(packed: bool):
        if packed:
            with packed_linears:
                return pipe(class_labels=[0], seed=0, output_type="pt", **knobs).images
        return pipe(class_labels=[0], seed=0, output_type="pt", **knobs).images

    reference = call(False)
    equal = torch.equal(reference, call(True))  # also the warm-up of both (the packing happens here)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for attempt in range(repeats):
        for packed in (False, True) if attempt % 2 == 0 else (True, False):
            start = time.perf_counter()
            images = call(packed)
            seconds[packed].append(time.perf_counter() - start)
            equal &= torch.equal(images, reference)
    plain, packed = seconds[False], seconds[True]
    print(
        f"\nend to end, exact path, B = 1 (cfg 1.5, top-k 900, top-p 0.96, decode included), {repeats} calls each: "
        f"plain weights best {min(plain):.2f} s, mean {sum(plain) / repeats:.2f} s; packed weights best "
        f"{min(packed):.2f} s, mean {sum(packed) / repeats:.2f} s ({min(plain) / min(packed):.3f}x best, "
        f"{sum(plain) / sum(packed):.3f}x mean); images bit-identical: {equal}"
    )


def decoder_convolution_shapes(tokenizer_config) -> dict[tuple[int, int, int, int], int]:
    """(channels in, out, side, kernel) -> count of the convolutions of one decode of the tokenizer."""
    tokenizer = MultiScaleVQVAE(tokenizer_config).eval()
    counts: dict[tuple[int, int, int, int], int] = {}

    def count(module, inputs, output):
        key = (module.in_channels, module.out_channels, inputs[0].shape[-1], module.kernel_size[0])
        counts[key] = counts.get(key, 0) + 1

    hooks = [m.register_forward_hook(count) for m in tokenizer.modules() if isinstance(m, torch.nn.Conv2d)]
    side = tokenizer.config.scale_sides[-1]
    with torch.no_grad():
        tokenizer.decode_fhat(torch.zeros(1, tokenizer.config.code_dim, side, side))
    for hook in hooks:
        hook.remove()
    return counts


def decoder_convolutions(tokenizer_config, repeats: int) -> tuple[float, float, bool]:
    total_plain = total_blocked = 0.0
    all_equal = True
    print("\n| convolution | side | NCHW ms | blocked ms | ratio | bit-identical | per decode |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with torch.no_grad():
        for (channels_in, channels_out, side, kernel), count in decoder_convolution_shapes(tokenizer_config).items():
            conv = torch.nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2)
            blocked_conv = mkldnn_utils.to_mkldnn(torch.nn.Sequential(conv))[0]
            x = torch.randn(1, channels_in, side, side)
            x_blocked = x.to_mkldnn()
            equal = torch.equal(conv(x), blocked_conv(x_blocked).to_dense())
            plain = best_seconds(repeats, conv, x)
            blocked = best_seconds(repeats, blocked_conv, x_blocked)
            total_plain, total_blocked = total_plain + plain * count, total_blocked + blocked * count
            all_equal &= equal
            print(
                f"| {channels_in} -> {channels_out}, {kernel}x{kernel} | {side} | {plain * 1e3:.1f} | "
                f"{blocked * 1e3:.1f} | {plain / blocked:.2f}x | {equal} | {count} |"
            )
    return total_plain, total_blocked, all_equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16, choices=(16, 20, 24, 30), help="a VAR d* shape at 256 px")
    parser.add_argument(
        "--tiny", action="store_true", help="presets.tiny's shapes instead: seconds, to check the script runs"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="time whole B = 1 calls of the exact path with and without packed weights instead (4 min for d16)",
    )
    add_threads_argument(parser)  # 2 by default: the setting, and the column halves use exactly two
    args = parser.parse_args()
    threads = set_threads(args)
    device = torch.device("cpu")
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny() if args.tiny else var(args.depth)
    model = "tiny preset" if args.tiny else f"d{args.depth}"
    set_mkl_threads = mkl_thread_setter()
    peak = matmul_peak_flops(device, torch.float32, size=TINY_PEAK_SIZE if args.tiny else None) / 1e9
    print(f"machine: {machine_name(device)}, {threads} threads, torch {torch.__version__}")
    print(
        f"float32 matmul peak {peak:.1f} GFLOP/s (measured in this run"
        + (f"; tiny run: a {TINY_PEAK_SIZE}-sided product, not the machine's peak)\n" if args.tiny else ")\n")
    )
    if args.end_to_end:
        if not hasattr(torch.ops.mkl, "_mkl_linear"):
            raise SystemExit("--end-to-end: this PyTorch has no MKL packed-GEMM operators")
        end_to_end(tokenizer_config, transformer_config, args.repeats)
        return
    if set_mkl_threads is None or threads != 2:
        print(f"column halves: skipped (needs PyTorch's MKL and exactly 2 threads; this run has {threads})")
    else:
        blas, split, best, equal = linear_products(transformer_config, args.repeats, set_mkl_threads)
        print(
            f"\nall linear products of a {model} B = 1 call: MKL {blas:.2f} s, column halves {split:.2f} s "
            f"({blas / split:.2f}x; bit-identical: {equal}); the faster of the two per shape: {best:.2f} s "
            f"(saving {blas - best:.2f} s)"
        )
    if not (torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")):
        print("packed weights: skipped (this PyTorch has no MKL packed-GEMM operators)")
    else:
        plain, packed, equal_from_8, equal_at_2 = packed_products(transformer_config, args.repeats)
        print(
            f"\nall linear products of a {model} B = 1 call: MKL {plain:.2f} s, packed weights {packed:.2f} s "
            f"({plain / packed:.2f}x, saving {plain - packed:.2f} s); bit-identical from 8 rows on: {equal_from_8}, "
            f"at 2 rows: {equal_at_2}"
        )
    plain, blocked, equal = decoder_convolutions(tokenizer_config, args.repeats)
    print(
        f"\nthe decoder's convolutions (one {tokenizer_config.image_size} px decode): NCHW {plain:.2f} s, "
        f"blocked {blocked:.2f} s "
        f"({plain / blocked:.2f}x, at most {plain - blocked:+.2f} s before the norms' reorders; bit-identical: {equal})"
    )


if __name__ == "__main__":
    main()
