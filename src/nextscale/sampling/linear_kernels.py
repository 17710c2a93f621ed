"""Which library computes float32 linear products on a CPU: the BLAS library (PyTorch's default) or oneDNN.

PyTorch's float32 ``F.linear`` on a CPU calls the BLAS library it was built with (MKL on x86-64). PyTorch also
ships oneDNN, which already runs its CPU convolutions and has float32 matrix-product kernels of its own. On the
project's 2-core AMD EPYC they run all linear products of a d16 sampling call 1.33x faster than MKL (2-3x for
the few-row products of the early scales): the whole d16 call, decode included, ran 1.35x / 1.32x faster than
the official sampler's steps at B = 1 / 8, against the exact path's 1.19x / 1.18x in the same run
(``benchmarks/linear_kernels.py``, ``benchmarks/sampling_paths.py``, ``benchmarks/RESULTS.md``). At widths of
128 or less oneDNN's per-call cost makes it slower.

It is **not** the exact path. Both kernels compute IEEE float32 products with float32 accumulation but add the
terms in a different order, so logits differ in their last bits, and a draw that lands within that distance of
a boundary between two tokens picks another token. Drawing every token of the same logits from both kernels
with the same random numbers, another token came out in 3.5e-4 of the draws of a random-weight d16 model (its
near-uniform logits put many boundaries close together; about one image in five would differ somewhere) and in
1.1e-5 of the bundled model's. So ``dtype="fp32"`` keeps PyTorch's kernel (the official code's bits on this
machine), and oneDNN runs where tokens may differ anyway: the fast path ``dtype="auto"`` on a CPU with neither
int8 nor bf16 instructions, when timed faster at the model's width (``choose_linear_kernel``), or on request
(``Pipeline.use_precision("fp32", linear_kernel="onednn")``).

``OneDNNLinears`` is a ``TorchFunctionMode``: inside its ``with`` block, on the current thread only, it sends
float32 CPU ``F.linear`` calls that need no gradient to oneDNN. No module or function is replaced, so the same
model still trains and runs elsewhere with PyTorch's own kernels.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

LINEAR_KERNELS = ("auto", "blas", "onednn")
# "auto" takes oneDNN when it is at least this much faster: below it the measured gain is within a busy
# machine's run-to-run spread, and the BLAS library's bits (the official code's, on this machine) are worth keeping.
MIN_SPEEDUP = 1.1
# Rows of the timed products: a few-row early scale and a large late one (a d16 call at B = 1 with CFG has
# products of 2 to 512 rows).
TIMED_ROWS = (16, 256)


def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN and its float32 linear operator."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` computed by oneDNN: (..., C_in) x (C_out, C_in) (+ bias) -> (..., C_out), float32 on a CPU."""
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, x.shape[-1]), weight, bias, "none", [], "")
    return out.view(*x.shape[:-1], weight.shape[0])


class OneDNNLinears(TorchFunctionMode):
    """Within ``with OneDNNLinears():``, float32 CPU linear products without gradients run in oneDNN."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear and _onednn_can_run(*args, **kwargs):
            return onednn_linear(*args, **kwargs)
        return func(*args, **kwargs)


def _onednn_can_run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        all(t.dtype == torch.float32 and t.device.type == "cpu" and t.layout == torch.strided for t in tensors)
        and x.dim() >= 2
        and weight.dim() == 2
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
    )


def measure_onednn_speedup(width: int, repeats: int = 3) -> float:
    """BLAS time over oneDNN time for this width's MLP-shaped products (C -> 4C at ``TIMED_ROWS`` rows), float32,
    timed here with the current threads, the two kernels alternating; the best of ``repeats`` each."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4 * width, width, generator=generator)
    bias = torch.randn(4 * width, generator=generator)
    inputs = [torch.randn(rows, width, generator=generator) for rows in TIMED_ROWS]
    best = {"blas": float("inf"), "onednn": float("inf")}
    with torch.no_grad():
        for attempt in range(repeats + 1):  # the first round warms both kernels up
            for kernel in best:
                start = time.perf_counter()
                for x in inputs:
                    if kernel == "onednn":
                        with OneDNNLinears():
                            F.linear(x, weight, bias)
                    else:
                        F.linear(x, weight, bias)
                if attempt:
                    best[kernel] = min(best[kernel], time.perf_counter() - start)
    return best["blas"] / best["onednn"]


def choose_linear_kernel(requested: str, width: int, device: torch.device | str) -> tuple[str, str]:
    """Resolve ``requested`` (one of ``LINEAR_KERNELS``) for a float32 model of this width on ``device``.

    Returns:
        ("blas" or "onednn", why): "blas" means PyTorch's own kernel (the BLAS library on a CPU, cuBLAS on a GPU).
    """
    if requested not in LINEAR_KERNELS:
        raise ValueError(f"linear_kernel must be one of {LINEAR_KERNELS}, got {requested!r}")
    device = torch.device(device)
    if requested == "blas":
        return "blas", "requested"
    if device.type != "cpu" or not onednn_linear_available():
        if requested == "onednn":
            raise ValueError("linear_kernel='onednn' needs a CPU and a PyTorch build with oneDNN; use 'blas'")
        return "blas", "oneDNN only runs on CPUs" if device.type != "cpu" else "this PyTorch has no oneDNN"
    if requested == "onednn":
        return "onednn", "requested"
    speedup = measure_onednn_speedup(width)
    kernel = "onednn" if speedup >= MIN_SPEEDUP else "blas"
    return kernel, f"oneDNN measured {speedup:.2f}x the BLAS library's speed at width {width}"
