"""The compute precision of a pipeline's sampling loop: exact float32, or a faster opt-in format.

- ``fp32``: the exact path (the official tokens for the same seed), with PyTorch's own linear kernels.
- ``bf16`` / ``fp16``: every linear layer the transformer runs under autocast holds its weights in that dtype (cast
  once, at load: the very values autocast would produce on every call, without the per-call casts and with half the
  weight traffic; the embeddings the models compute with autocast off stay float32) and the transformer and the
  tokenizer's decoder run under ``torch.autocast`` (the KV cache in the autocast dtype). Logits, sampling, the
  quantizer's f-hat and the images stay float32. bf16 pays on GPUs and on CPUs with native bf16 matrix
  instructions (AVX-512 BF16 / AMX); on other CPUs it is far slower than float32. fp16 is for GPUs without bf16.
- ``int8``: dynamic int8 quantisation of the transformer's linear layers (FFN, q/k/v, attention outputs, AdaLN,
  head; weights int8 per tensor, activations quantised per call), with the decoder under bf16 autocast where the
  CPU has native bf16 (else float32): CPU only, pays where VNNI exists.
- ``auto``: on a GPU bf16 (fp16 on GPUs without native bf16, before Ampere); on a CPU, by the processor's instructions:
  int8 where it has VNNI or AVX2 (fbgemm's int8 kernels; PyTorch needs a quantised engine), else bf16 where it has
  native bf16 matrix instructions (AVX-512 BF16 or AMX), else fp32 with its linear products in oneDNN where that is
  timed faster at the model's width at the first call (not the exact path: ``nextscale.sampling.linear_kernels``).
  Measured side by side: on a CPU with VNNI and AVX-512 BF16 int8 was fastest for every model and batch size (d16
  2.79x / 2.58x over the official sampler's steps at B = 1 / 8 against bf16's 2.15x / 2.23x, the bundled models
  1.23-1.50x against 1.15-1.44x); on an AVX2-only CPU int8 1.66x at B = 1 where bf16 runs hundreds of times slower
  than float32 (``benchmarks/sampling_paths.py``, ``benchmarks/precision_speed.py``, figures in
  ``benchmarks/RESULTS.md``). The choice and its reason are kept in ``Precision.reason``.

Reduced precision changes the sampled tokens (not their distribution's intent): the model cards report the
quality cost.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from nextscale.sampling.linear_kernels import OneDNNLinears

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The linear layers int8 quantises: the FFN, the self-attention q/k/v projection (``SelfAttention.project_qkv``
# calls a replaced layer as a module and adds the q/v bias), the attention and cross-attention outputs, every
# AdaLN projection and the head. (Cross-attention's text projections run once per call and stay float32.)
INT8_SUFFIXES = ("ffn.fc1", "ffn.fc2", "attn.qkv", "attn.proj", "cross_attn.proj", "adaln.linear", "head")
# The linear layers the models run with autocast off, in float32 as the official code does (STAR's text projections
# of the pooled text, and the teacher-forced word embedding): bf16 / fp16 leave them float32, as autocast would.
FLOAT32_LINEARS = ("text_proj", "word_embed")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` in fp32 / bf16 / fp16 / int8 (the transformer's), why it was chosen,
    ``decoder``, the tokenizer decoder's (fp32, bf16 or fp16; by default the same float format as ``name``), and
    ``linear_kernel``, what computes its float32 linear products ("blas": PyTorch's own; "onednn"; "auto" until
    the pipeline has timed the two, see ``nextscale.sampling.linear_kernels``)."""

    name: str
    reason: str = "requested"
    decoder: str | None = None
    linear_kernel: str = "blas"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.name)

    @property
    def decoder_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.decoder if self.decoder is not None else self.name)

    def autocast(self, device: torch.device | str):
        """The context the transformer runs in (a no-op for fp32 and int8)."""
        return _autocast(device, self.autocast_dtype)

    def linear_products(self):
        """The context the transformer's float32 linear products run in (oneDNN's kernels once chosen)."""
        return OneDNNLinears() if self.name == "fp32" and self.linear_kernel == "onednn" else contextlib.nullcontext()

    def decoder_autocast(self, device: torch.device | str):
        """The context the tokenizer's decoder runs in (a no-op for a float32 decoder)."""
        return _autocast(device, self.decoder_dtype)


def _autocast(device: torch.device | str, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def native_bf16(flags: set[str]) -> bool:
    """Whether a CPU with these instruction-set flags has native bf16 matrix instructions."""
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_precision(requested: str, device: torch.device | str) -> Precision:
    """Resolve ``requested`` (one of ``PRECISIONS``) on ``device``; a clear error for a format the device lacks."""
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise ValueError(f"dtype must be one of {PRECISIONS}, got {requested!r}")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("fp16 is a GPU format (CPUs compute it slowly or not at all); on a CPU use bf16 or int8")
    if requested == "int8" and device.type != "cpu":
        raise ValueError("int8 dynamic quantisation runs on CPUs only; on a GPU use bf16 (or fp16)")
    if requested == "int8":
        return int8_precision(cpu_flags(), "requested")
    if requested != "auto":
        return Precision(requested)
    if device.type == "cuda":
        if cuda_native_bf16(device):
            return Precision("bf16", "auto: a GPU with bf16 support")
        return Precision("fp16", "auto: a GPU without native bf16 (before Ampere)")
    if device.type != "cpu":
        return Precision("fp32", f"auto: no faster format is known for {device.type}")
    flags = cpu_flags()
    if int8_engine_available():
        if flags & {"avx512_vnni", "avx_vnni"}:
            return int8_precision(flags, "auto: this CPU has int8 dot-product instructions (VNNI)")
        if "avx2" in flags:  # fbgemm's AVX2 int8 kernels: measured 1.66x over the official steps (d16, B = 1)
            return int8_precision(flags, "auto: this CPU runs int8 products with AVX2")
    if native_bf16(flags):
        return Precision("bf16", "auto: this CPU has native bf16 matrix instructions (AVX-512 BF16 / AMX)")
    return Precision(
        "fp32", "auto: this CPU has no int8 (AVX2 / VNNI) or native bf16 instructions", linear_kernel="auto"
    )


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` computes bf16 natively (NVIDIA compute capability 8.0 or later, or ROCm).

    Not ``torch.cuda.is_bf16_supported()``: by default it also says yes for older GPUs that only emulate bf16
    (far slower than their fp16), and it asks about the current device rather than ``device``.
    """
    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device)[0] >= 8


def int8_precision(flags: set[str], reason: str) -> Precision:
    """int8 linear layers, with the decoder in bf16 where the CPU computes bf16 natively (else float32)."""
    if native_bf16(flags):
        return Precision("int8", f"{reason}; decoder in bf16 (native bf16 matrix instructions)", decoder="bf16")
    return Precision("int8", f"{reason}; decoder in fp32 (no native bf16)", decoder="fp32")


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (Linux ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cast_linear_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the ``nn.Linear`` weights and biases of ``model`` in ``dtype``, in place; returns how many layers.

    Under autocast a linear layer rounds its float32 weight to the autocast dtype on every call; casting once
    gives the same rounded values (the same outputs) without re-reading the float32 weights at every call. The
    model must then run under autocast of ``dtype`` (its other parameters stay float32). The layers that the model
    runs with autocast off (``FLOAT32_LINEARS``) stay float32, so that they too compute what they compute under
    autocast.
    """
    layers = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not name.endswith(FLOAT32_LINEARS)
    ]
    for layer in layers:
        layer.to(dtype)
    return len(layers)


def int8_engine_available() -> bool:
    """Whether this PyTorch build has a quantised engine (what int8 dynamic quantisation runs on)."""
    return not set(torch.backends.quantized.supported_engines) <= {"none"}


def quantize_dynamic_int8(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` with its module-called linear layers (``INT8_SUFFIXES``) dynamically quantised to int8,
    or None where this PyTorch build has no quantised engine."""
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if not int8_engine_available():
        return None
    spec = {
        name: default_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.endswith(INT8_SUFFIXES)
    }
    with warnings.catch_warnings():
        # PyTorch points eager-mode quantisation users to torchao; the eager API is what runs without extras.
        warnings.simplefilter("ignore")
        try:
            return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)
        except (RuntimeError, NotImplementedError):
            return None
