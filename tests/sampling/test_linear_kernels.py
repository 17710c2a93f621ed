"""Float32 linear products in oneDNN: F.linear to float32 rounding, only inside its scope and only where it can;
the exact fp32 path never uses it, the fast path on a CPU without int8 / bf16 instructions keeps it where it is
timed faster, and a request for it is checked."""

import pytest
import torch
import torch.nn.functional as F

from nextscale.sampling import linear_kernels, precision
from nextscale.sampling.linear_kernels import OneDNNLinears, choose_linear_kernel, measure_onednn_speedup
from nextscale.sampling.pipeline import Pipeline

pytestmark = pytest.mark.skipif(not linear_kernels.onednn_linear_available(), reason="this PyTorch has no oneDNN")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products that ran in oneDNN."""
    calls = []
    real = linear_kernels.onednn_linear

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(linear_kernels, "onednn_linear", counting)
    return calls


@pytest.mark.parametrize("with_bias", [True, False])
def test_onednn_computes_the_linear_product_to_float32_rounding(with_bias, onednn_calls):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 37, 256, generator=generator)
    weight = torch.randn(1024, 256, generator=generator)
    bias = torch.randn(1024, generator=generator) if with_bias else None
    exact = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    blas = F.linear(x, weight, bias)
    with torch.no_grad(), OneDNNLinears():
        ours = F.linear(x, weight, bias=bias)
    assert len(onednn_calls) == 1 and ours.shape == blas.shape and ours.dtype == torch.float32
    # Float32 products summed in another order: off the float64 product by float32 rounding, as the BLAS
    # library's are (2-3x its error here, both about 1e-6 of the outputs' size of about 30).
    blas_error, our_error = (blas - exact).abs().max().item(), (ours - exact).abs().max().item()
    assert 0 < our_error < 5 * blas_error and our_error < 2e-4


def test_only_float32_products_without_gradients_inside_the_scope_go_to_onednn(onednn_calls):
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(4, 64)
    layer(x).sum().backward()  # outside the scope: PyTorch's kernel
    with OneDNNLinears():
        layer(x).sum().backward()  # a gradient is needed: PyTorch's kernel, and backward still works
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)  # a bf16 product under autocast
        layer.to(torch.bfloat16)(x.bfloat16())  # bf16 weights
    assert onednn_calls == [] and layer.weight.grad is not None
    with torch.no_grad(), OneDNNLinears():
        layer.float()(x)
    assert onednn_calls == [torch.Size([4, 64])]


@pytest.fixture(scope="module")
def blas_output():
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist").use_precision("fp32", linear_kernel="blas")
    return pipe(class_labels=list(range(10)) * 2, seed=5, cfg=3, output_type="pt")


def test_the_bundled_model_draws_nearly_the_same_images_with_either_kernel(blas_output, onednn_calls):
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist").use_precision("fp32", linear_kernel="onednn")
    out = pipe(class_labels=list(range(10)) * 2, seed=5, cfg=3, output_type="pt")
    assert pipe.precision.linear_kernel == "onednn" and len(onednn_calls) > 100
    # Another summation order changes about 1e-5 of this model's draws (benchmarks/linear_kernels.py): about one
    # image in 700 of 130 tokens. Nearly every image must come out the same.
    same = [torch.equal(a, b) for a, b in zip(out.images, blas_output.images, strict=True)]
    assert sum(same) >= 18


def test_the_exact_path_never_times_or_uses_onednn(monkeypatch, onednn_calls):
    monkeypatch.setattr(linear_kernels, "measure_onednn_speedup", lambda width: pytest.fail("timed"))
    for dtype in ("fp32", "bf16"):
        pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype=dtype)
        pipe(class_labels=[1], seed=0)
        assert pipe.precision.linear_kernel == "blas"
    assert onednn_calls == []


@pytest.mark.parametrize("speedup, expected", [(1.4, "onednn"), (1.05, "blas"), (0.5, "blas")])
def test_the_fast_path_without_int8_or_bf16_keeps_the_kernel_timed_faster(monkeypatch, speedup, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"sse4_2"})  # no AVX2 (int8), no native bf16
    widths = []
    monkeypatch.setattr(linear_kernels, "measure_onednn_speedup", lambda width: widths.append(width) or speedup)
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist", dtype="auto")
    assert (pipe.precision.name, pipe.precision.linear_kernel, widths) == ("fp32", "auto", [])  # timed at a call
    pipe(class_labels=[1], seed=0)
    pipe(class_labels=[2], seed=0)
    assert pipe.precision.linear_kernel == expected and widths == [pipe.transformer.config.embed_dim]
    assert f"{speedup:.2f}x" in pipe.precision.reason and f"linear products in {expected}" in pipe.precision.reason


def test_kernel_requests_are_checked():
    assert choose_linear_kernel("blas", 1024, "cpu") == ("blas", "requested")
    assert choose_linear_kernel("onednn", 64, "cpu") == ("onednn", "requested")
    with pytest.raises(ValueError, match="must be one of"):
        choose_linear_kernel("mkl", 1024, "cpu")
    with pytest.raises(ValueError, match="needs a CPU"):
        choose_linear_kernel("onednn", 1024, "cuda")
    assert choose_linear_kernel("auto", 1024, "cuda")[0] == "blas"
    pipe = Pipeline.from_pretrained("bundled:fashion-mnist")
    with pytest.raises(ValueError, match="must be one of"):
        pipe.use_precision("fp32", linear_kernel="fast")
    with pytest.raises(ValueError, match="applies to fp32"):
        pipe.use_precision("bf16", linear_kernel="onednn")


def test_the_measurement_times_both_kernels():
    speedup = measure_onednn_speedup(64, repeats=1)
    assert 0.0 < speedup < float("inf")
