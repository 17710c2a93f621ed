"""The flags of ``nextscale evaluate`` (``add_arguments``, which the command table calls through
``nextscale.cli.evaluate``), with their help texts and the defaults those texts name."""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import add_model_argument, add_sampling_arguments
from nextscale.cli.evaluate_edit import add_arguments as add_edit_arguments
from nextscale.training.data_specs import add_bad_images_argument

DEFAULT_NUM = 2000
DEFAULT_NUM_PROMPTS = 200
DEFAULT_MAX_ITEMS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="measure images already made instead of a model: a folder (`sample --out-dir`, or any square images "
        "of one size) or an .npz with arr_0 uint8 (N, H, W, 3) (`sample --npz`, OpenAI's evaluation format); "
        "needs --reference",
    )
    parser.add_argument(
        "--num",
        "--num-images",
        type=int,
        default=None,
        help=f"generated images (class models; default: {DEFAULT_NUM}); text models with --reference: the first N "
        f"reference images, one sample of each one's caption (default: all, up to {DEFAULT_NUM}); --samples: N of "
        "the images, spread evenly through them (default: all); --loss: the first N sequences (default: all)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="real images. Class models: 'fashion-mnist[:DIR]' (its test split; the default for Fashion-MNIST "
        "models), a folder of class sub-folders (every image in it: pass DIR/val for a held-out split) or an "
        ".npz of real images in OpenAI's format (arr_0 uint8 N x H x W x 3 at the samples' size, e.g. "
        "VIRTUAL_imagenet256_labeled.npz; Inception features). "
        "Text models: 'captions:PATH' (or PATH), captioned images as `train --data captions:PATH` reads them "
        "(a folder with .txt captions, captions.jsonl/.csv, .tar shards): each image's first caption is sampled "
        "and FID compares the samples with the images (default: none, prompt adherence only)",
    )
    add_bad_images_argument(parser)
    parser.add_argument(
        "--features",
        choices=("inception", "classifier"),
        default="inception",
        help="feature network for FID and precision/recall (default: inception); classifier: the bundled "
        "Fashion-MNIST classifier's embedding, for 32x32 models (of each quadrant, concatenated, for 64x64 ones)",
    )
    parser.add_argument("--inception", type=Path, default=None, help="FID Inception TorchScript file")
    parser.add_argument(
        "--inception-classifier",
        type=Path,
        default=None,
        metavar="FILE",
        help="also report the Inception Score (IS) as papers do, from the Inception's 1008-class output layer in "
        "a local file: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, torch-fidelity's weights file, "
        "NVIDIA's inception-2015-12-05.pt, or an .npz/.safetensors of the (1008, 2048) matrix",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also report FID of N held-out real images (Fashion-MNIST's train split against its test split)",
    )
    parser.add_argument(
        "--reconstructions",
        action="store_true",
        help="measure the tokenizer instead of the transformer: N reference images spread evenly through it, "
        "encoded to tokens and decoded, against the reference (rFID); sampling flags are ignored",
    )
    parser.add_argument(
        "--reference-cache",
        type=Path,
        default=None,
        help="a .npz file for the reference features: written on the first run, read on later ones "
        "(it records the reference, network and size it belongs to)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per sampling call (default: 100)")
    parser.add_argument(
        "--save-samples",
        type=Path,
        default=None,
        help="also write the samples as PNGs into this new or empty folder ({index:06d}_class{label}.png; text "
        "models: {index:06d}.png + prompts.txt), in a cfg-VALUE/ folder per value when --cfg sweeps",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    parser.add_argument(
        "--loss",
        action="store_true",
        help="measure held-out test loss and token error per scale (L_last, L_avg, Err_last, Err_avg) on --tokens "
        "instead of sampling (class and text models); a raster model's is over its one-map tokens, not comparable "
        "with a next-scale model's",
    )
    parser.add_argument(
        "--tokens",
        type=Path,
        default=None,
        help="with --loss: a held-out token folder from `nextscale tokenize` made with the model's tokenizer "
        "(labelled for a class model, captioned for a text model)",
    )
    text = parser.add_argument_group("text models: prompt adherence (64x64 Fashion-MNIST scenes only)")
    text.add_argument("--prompts", type=Path, default=None, help="a file of scene captions, one prompt per line")
    text.add_argument(
        "--num-prompts",
        type=int,
        default=None,
        help=f"without --prompts: the first N of the fixed evaluation prompts (default: {DEFAULT_NUM_PROMPTS})",
    )
    text.add_argument(
        "--max-items",
        type=int,
        default=None,
        help=f"without --prompts: most items per evaluation prompt, 1-4 (default: {DEFAULT_MAX_ITEMS})",
    )
    text.add_argument("--images-per-prompt", type=int, default=None, help="samples of each prompt (default: 1)")
    add_edit_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and scripts)")
    add_sampling_arguments(parser, cfg=1.5, cfg_sweep=True, unseeded="0: evaluations are repeatable")
