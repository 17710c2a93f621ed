"""A pipeline's speed switches: kept CPU memory, CUDA graphs, fused kernels, the sampling precision and the fp32
linear kernel.

Each switch is opt-in; those that change the numbers (a reduced precision, fused kernels, the oneDNN kernel) say
so. The mechanisms live in ``cpu_memory``, ``cuda_graphs``, ``layers/fused``, ``precision`` and
``linear_kernels``; ``SpeedSwitchesMixin`` gives ``Pipeline`` the methods that turn them on.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from nextscale.sampling.cuda_graphs import CudaGraphSteps
from nextscale.sampling.linear_kernels import choose_linear_kernel
from nextscale.sampling.precision import (
    PRECISIONS,
    Precision,
    cast_linear_weights,
    choose_precision,
    quantize_dynamic_int8,
)
from nextscale.sampling.sampler import ScaleSampler

if TYPE_CHECKING:
    from nextscale.sampling.pipeline import Pipeline


# Spellings of a precision that researchers bring from other libraries (diffusers' torch_dtype, ...) -> its name.
PRECISION_SPELLINGS = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.qint8: "int8",
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "qint8": "int8",
}


def check_precision_name(dtype: object) -> None:
    """Refuse a ``dtype`` that is not a precision name, saying which name was meant (``torch.bfloat16``: "bf16")."""
    if isinstance(dtype, str) and dtype in PRECISIONS:
        return
    key = dtype.lower() if isinstance(dtype, str) else dtype
    meant = PRECISION_SPELLINGS.get(key) if isinstance(key, (str, torch.dtype)) else None
    if meant is None and key in PRECISIONS:
        meant = key  # "BF16"
    hint = f"; for {dtype!r} pass dtype={meant!r}" if meant else ""
    raise ValueError(f"dtype must be one of {PRECISIONS} (a name, not a torch.dtype), got {dtype!r}{hint}")


class SpeedSwitchesMixin:
    """``keep_memory``, ``release_memory``, ``use_cuda_graphs``, ``use_fused_kernels``, ``use_precision`` and
    ``settle_linear_kernel`` of ``Pipeline`` (which provides ``tokenizer``, ``transformer``, ``sampler``,
    ``device``, ``memory_hold`` and ``turn``).

    Every switch takes the pipeline's turn (``Pipeline.turn``), so it waits for a call running in another thread
    instead of replacing the weights, the sampler or the kept caches under it."""

    # How the sampling loop computes (``use_precision``); float32 unless asked otherwise.
    precision: Precision = Precision("fp32", "default")

    def keep_memory(self) -> None:
        """On a CPU, keep freed activations for reuse from this call on (``nextscale.sampling.cpu_memory``: no
        fresh page faults from the second call on, same numbers); :meth:`release_memory` gives them back."""
        if self.device.type == "cpu":
            self.memory_hold.acquire()

    def release_memory(self) -> None:
        """Give back what the pipeline keeps between calls: the kept freed CPU memory, the KV cache and the CUDA
        graphs. Waits for a call running in another thread: dropping the graphs under it would fail its next step."""
        with self.turn():
            self.drop_kept_state()

    def drop_kept_state(self) -> None:
        """The work of :meth:`release_memory`, for a caller that already holds the pipeline's turn."""
        self.sampler.steps.release()
        self.memory_hold.release()

    def use_cuda_graphs(self, enabled: bool = True) -> Pipeline:
        """Replay each scale's transformer step as a captured CUDA graph from now on (next-scale pipelines on a
        CUDA device; see ``nextscale.sampling.cuda_graphs``): the first call per batch size captures, later calls
        replay. Tokens equal the eager loop's in float32. ``enabled=False`` goes back to the eager steps (a
        pipeline moved off the GPU samples again)."""
        with self.turn():  # not under a call running in another thread
            self.sampler = self.sampler_with_cuda_graphs(enabled)
        return self

    def sampler_with_cuda_graphs(self, enabled: bool) -> ScaleSampler:
        """The sampler that ``use_cuda_graphs(enabled)`` switches to (the current one when nothing changes)."""
        if not enabled:
            graphed = isinstance(self.sampler.steps, CudaGraphSteps)
            return ScaleSampler(self.tokenizer, self.transformer) if graphed else self.sampler
        if self.device.type != "cuda":
            raise ValueError(
                f"CUDA graphs need a CUDA device; this pipeline is on {self.device.type} (load it with device='cuda')"
            )
        if not isinstance(self.sampler, ScaleSampler):
            raise ValueError(f"CUDA graphs are built for next-scale sampling, not {type(self.sampler).__name__}")
        return ScaleSampler(self.tokenizer, self.transformer, cuda_graphs=True)

    def use_fused_kernels(self, enabled: bool = True) -> Pipeline:
        """Run the transformer blocks' norms, AdaLN modulations, gated residuals and q/k normalisation as fused
        compiled kernels from now on (``enabled``), or as the exact ops (see ``nextscale.layers.fused``). They are
        compiled at the first call (seconds, once per process; again, once, at the first call with one image after
        several or the other way round, and with another dtype), and pay most inside CUDA graphs at small batches.
        Not bit-identical to the exact path in float32 (about 1e-6 relative; a token whose top candidates tie that
        closely may differ)."""
        with self.turn():  # not under a call running in another thread
            self.transformer.use_fused_kernels(enabled)
        return self

    def use_precision(self, dtype: str, linear_kernel: str | None = None) -> Pipeline:
        """Sample in ``dtype`` from now on (see :meth:`from_pretrained`); ``self.precision.reason`` says why.

        ``linear_kernel`` (with "fp32" on a CPU): what computes the transformer's linear products: "blas"
        (PyTorch's own, the exact path's), "onednn" (faster for wide models, not bit-exact), or "auto" (the faster
        of the two at this model's width, timed at the first call); see ``nextscale.sampling.linear_kernels``.
        """
        check_precision_name(dtype)
        with self.turn():  # not under a call running in another thread
            self.switch_precision(self.requested_precision(dtype, linear_kernel))
        return self

    def requested_precision(self, dtype: str, linear_kernel: str | None) -> Precision:
        """The checked ``Precision`` that ``use_precision(dtype, linear_kernel)`` asks for on this pipeline."""
        precision = choose_precision(dtype, self.device)
        if linear_kernel is not None:
            if precision.name != "fp32":
                raise ValueError(f"linear_kernel applies to fp32 sampling, not {precision.name}")
            if linear_kernel != "auto":  # checked now; "auto" is timed at the first call
                width = self.transformer.config.embed_dim
                linear_kernel, _ = choose_linear_kernel(linear_kernel, width, self.device)
            precision = dataclasses.replace(precision, linear_kernel=linear_kernel)
        if self.precision.name != "fp32" and precision.name != self.precision.name:
            raise ValueError(
                f"this pipeline's transformer already holds {self.precision.name} weights; load the folder again "
                f"with Pipeline.from_pretrained(path, dtype={precision.name!r})"
            )
        return precision

    def switch_precision(self, precision: Precision) -> None:
        """Cast or quantise the transformer for ``precision`` and sample in it (in the pipeline's turn)."""
        if precision.name != self.precision.name:
            if precision.name == "int8":
                quantized = quantize_dynamic_int8(self.transformer)
                if quantized is None:
                    raise ValueError("this PyTorch build has no quantised engine for int8; use dtype='bf16' or 'fp32'")
                self.transformer = quantized.eval()
                self.sampler = type(self.sampler)(self.tokenizer, self.transformer)
            elif precision.autocast_dtype is not None:
                cast_linear_weights(self.transformer, precision.autocast_dtype)
        if self.device.type == "cpu" and precision.name != "fp32":
            # Faster here but not bit-identical images (within 3e-5), so only on the fast paths.
            self.tokenizer.use_channels_last_decoder()
        self.precision = precision

    def settle_linear_kernel(self) -> None:
        """At the first float32 call, time the two linear kernels at this model's width and keep the faster."""
        if self.precision.name != "fp32" or self.precision.linear_kernel != "auto":
            return
        kernel, why = choose_linear_kernel("auto", self.transformer.config.embed_dim, self.device)
        reason = f"{self.precision.reason}; linear products in {kernel} ({why})"
        self.precision = dataclasses.replace(self.precision, linear_kernel=kernel, reason=reason)
