"""The elementwise regions of a transformer block, compiled into fused kernels for inference.

At small batches a GPU sampling call is bound by the number of kernels, not by its math: a d16 VAR block
launches about 35 (a LayerNorm, three ops for each AdaLN modulation, nine for the cosine q/k normalisation,
two for each gated residual, the casts to bf16 in front of every matrix product), and all but its five matrix
products and one attention are elementwise kernels of 1-5 us. A profile of one bf16 B = 1 call of the CUDA
graphs on an H200 (``benchmarks/RESULTS.md``) spent most of its 24 ms of GPU time in them. Each region below
is the same math as the exact path, written as one function; :func:`fused_regions` compiles them (inductor
generates one kernel per region, with the cast to the matrix products' dtype folded in):

- ``norm_modulate``: ``LN(x) * (1 + scale) + shift`` (5 kernels -> 1);
- ``gated_add_norm_modulate``: the attention's gated residual and the FFN's modulated norm (7 -> 1);
- ``gated_add``: the FFN's gated residual (2 -> 1);
- ``normalize_qk``: unit queries times the per-head temperature, unit keys (9 or more -> 1 or 2);
- for STAR's blocks (no AdaLN): ``norm`` and ``add_norm`` (a residual and the next sub-layer's norm).

The same ``norm_modulate`` serves the AdaLN in front of the logits head.

Compiled kernels reduce in another order than the eager ones, so their float32 outputs differ from the exact
path in the last bits (about 1e-6 relative); they are an opt-in fast path for inference (``use_fused_kernels``
of the transformers), never used in training, where drop-path sits inside the residuals. Compiling takes a few
seconds per region and shape class on the first call (dynamic shapes: one compile serves every block and every
scale after the first; the first scale's single token, batch 1 and each dtype are classes of their own, each a
compiled variant: ``nextscale.layers.compiling``). Inside a CUDA graph the compiled kernels are captured like any
other, which is where they pay: eager, each compiled call adds its Python guard checks to the launch overhead
that the graphs remove.

References:
    Ansel et al., "PyTorch 2: Faster Machine Learning Through Dynamic Python Bytecode Transformation and
    Graph Compilation" (ASPLOS 2024): TorchDynamo and TorchInductor's fusion of pointwise and reduction ops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nextscale.layers.adaln import modulate
from nextscale.layers.attention import normalize_qk as exact_normalize_qk
from nextscale.layers.attention import region_dtype as region_dtype  # re-exported for the blocks
from nextscale.layers.compiling import compile_with_room


def _cast(x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return x if dtype is None else x.to(dtype)


def norm_modulate(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float, dtype: torch.dtype | None
) -> torch.Tensor:
    """``LN(x) * (1 + scale) + shift`` for (B, l, C) x and (B, 1, C) scale and shift, in ``dtype`` (None: x's)."""
    return _cast(modulate(F.layer_norm(x, (x.shape[-1],), eps=eps), scale, shift), dtype)


def gated_add(x: torch.Tensor, out: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The gated residual ``x + out * gamma`` (drop-path is the identity at inference); x's dtype."""
    return x + out.mul(gamma)


def gated_add_norm_modulate(
    x: torch.Tensor,
    out: torch.Tensor,
    gamma: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    eps: float,
    dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual after one sub-layer and the modulated norm in front of the next: (x', norm_modulate(x'))."""
    x = gated_add(x, out, gamma)
    return x, norm_modulate(x, scale, shift, eps, dtype)


def norm(x: torch.Tensor, eps: float, dtype: torch.dtype | None) -> torch.Tensor:
    """The parameter-free LayerNorm in front of a STAR sub-layer, in ``dtype`` (None: x's)."""
    return _cast(F.layer_norm(x, (x.shape[-1],), eps=eps), dtype)


def add_norm(
    x: torch.Tensor, out: torch.Tensor, eps: float, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """STAR's residual after one sub-layer and the norm in front of the next: (x + out, norm(x + out))."""
    x = x + out
    return x, norm(x, eps, dtype)


def normalize_qk(
    q: torch.Tensor, k: torch.Tensor, log_temperature: torch.Tensor, dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine attention's scaled unit queries and unit keys (``attention.normalize_qk``), in ``dtype``."""
    q, k = exact_normalize_qk(q, k, log_temperature)
    return _cast(q, dtype), _cast(k, dtype)


@dataclass(frozen=True)
class FusedRegions:
    """The compiled regions (see the module docstring); each takes the arguments of its eager function."""

    norm_modulate: Callable[..., torch.Tensor]
    gated_add: Callable[..., torch.Tensor]
    gated_add_norm_modulate: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    normalize_qk: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    norm: Callable[..., torch.Tensor]
    add_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]]


# Each region meets many compiled variants (``nextscale.layers.compiling``): dynamic shapes still compile one per
# combination of batch 1 or more, tokens 1 or more (the first scale), a modulation view at offset 0 or not (the
# head's or a block's), the output dtype (None, bf16, fp16), grad mode and device. Sampling one image without
# guidance and then with it already needs 9 of ``norm_modulate`` (with the one of ``require_fused_regions``' check).


def _compiled(function: Callable) -> Callable:
    """``function`` compiled with dynamic shapes and room for many variants; a variant that fails to compile
    (after :func:`require_fused_regions` found the compiler working) raises a one-line ValueError."""
    import torch._dynamo

    region = compile_with_room(function, dynamic=True)

    @functools.wraps(function)
    def call(*args):
        try:
            return region(*args)
        except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. a dtype this GPU's triton lacks
            names = dict.fromkeys(str(arg.dtype).removeprefix("torch.") for arg in args if torch.is_tensor(arg))
            dtypes = "/".join(names)  # "float32", "float32/bfloat16"
            raise ValueError(
                f"fused kernels do not compile {function.__name__} for {dtypes} inputs ({_summary(error)}). Sample "
                "without them (drop --fused-kernels)"
            ) from error

    return call


def _summary(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


@functools.cache
def fused_regions() -> FusedRegions:
    """The regions compiled with dynamic shapes (created once per process; each compiles at its first call)."""
    return FusedRegions(
        norm_modulate=_compiled(norm_modulate),
        gated_add=_compiled(gated_add),
        gated_add_norm_modulate=_compiled(gated_add_norm_modulate),
        normalize_qk=_compiled(normalize_qk),
        norm=_compiled(norm),
        add_norm=_compiled(add_norm),
    )


@functools.cache
def _compile_failure(device: str) -> str | None:
    """Why the regions cannot be compiled and run on ``device`` (no C++ compiler for inductor's CPU code, no
    triton for its GPU code, ...), or None when they can: one small region, compiled and run once per device."""
    try:
        x = torch.ones(1, 2, 8, device=device)
        with torch.no_grad():  # as inference calls it, so that sampling reuses this variant
            fused_regions().norm_modulate(x, x[:, :1], x[:, :1], 1e-6, None)
    except Exception as error:  # any compiler failure: reported in one line by require_fused_regions
        return _summary(error)
    return None


def require_fused_regions(device: torch.device | str) -> FusedRegions:
    """:func:`fused_regions`, after checking that they compile on ``device`` (a one-line ValueError if not)."""
    failure = _compile_failure(str(torch.device(device)))
    if failure is not None:
        raise ValueError(
            f"fused kernels do not compile on {device} ({failure}); they need torch.compile's inductor with a C++ "
            "compiler on CPUs or triton on GPUs. Sample without them (drop --fused-kernels)"
        )
    return fused_regions()
