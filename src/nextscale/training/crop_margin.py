"""``--crop-margin R``: how much of each image the crops keep, chosen once and recorded with the run or token folder.

Every image is resized so that its shorter side is ``round(R * size)`` and then cropped to ``size x size`` (a random
crop in training, the centre for held-out data and tokenizing). R is the ratio of the resized shorter side to the
crop: 1.0 keeps the whole shorter side (no margin); VAR's ImageNet recipe (``mid_reso``) uses 1.125.

Worked example: a 256 px crop with R = 1.125 resizes the shorter side to 288 px, so 32 px of it (16 px, 5.6 %, on
each side) never reach the model; with R = 1.0 the shorter side is resized to 256 px and kept whole. A subject that
fills the frame (product photos, icons, faces) wants 1.0.

Defaults are the data's (``default_crop_margin``): 1.125 for image folders, 1.0 for captioned data (captions name
positions, "top left", that a margin would shift). Fashion-MNIST is resized whole, without a crop: the flag is
refused there. Values below 1 (the image would not cover the crop) or above ``MAX_CROP_MARGIN`` are refused while
parsing (``options.crop_margin_ratio``).

Recorded as ``"crop_margin"`` in a training run's config.json and in a token folder's manifest.json:

- A resumed run keeps its margin: without the flag it reads the recorded one, and another typed value is refused
  in one line (it would crop other images than the checkpoints were trained on). A run made before the field
  existed cropped with its data's default: it resumes with that, and records nothing (its config.json stays as it
  was, as ``data_specs.caption_split_record`` does for the caption split).
- ``train --tokens T`` takes ``T``'s margin (its manifest's; a folder made before the field, its data's default):
  the held-out images of ``--data`` / ``--eval-data`` are then cropped as the tokens were. Another typed value is
  refused, naming both; so is a token folder remade with another margin than the resumed run's.
- ``tokenize --tokenizer RUN`` takes a tokenizer run's margin (its config.json's) for data of the kind the run
  trained on (an image folder, or captioned images): the tokens are then cropped as the tokenizer's training images
  were. Another kind of data keeps its own default (a tokenizer trained on a folder's crops says nothing about the
  positions captions name). A typed value that differs from the run's is used, with a one-line warning.
- ``evaluate --reference`` does not follow it: reference images keep the data's default (1.125 for a folder of
  class sub-folders, 1.0 for captions:), whatever margin the model was trained with.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX, recorded_run_config
from nextscale.training.options import crop_margin_ratio

CROP_MARGIN_FIELD = "crop_margin"  # in a run's config.json and a token folder's manifest.json


def add_crop_margin_argument(parser: argparse.ArgumentParser, resumes: bool = True) -> None:
    """--crop-margin R (default: the data's; a resumed run's or a --tokens folder's recorded value; for ``tokenize``,
    ``resumes=False``, a tokenizer run's)."""
    recorded = (
        "; a resumed run keeps its own, and train --tokens takes the token folder's"
        if resumes
        else "; a --tokenizer training run's own, for data of the kind it trained on"
    )
    parser.add_argument(
        "--crop-margin",
        type=crop_margin_ratio,
        default=None,
        help="ratio of the resized shorter side to the crop, from 1 (no margin: the crop keeps the whole shorter "
        "side, for subjects that fill the frame) to 2 (default: 1.125, VAR's, for image folders, whose crops lose "
        f"about 6 %% of each side; 1.0 for captioned data{recorded}; Fashion-MNIST has no crop)",
    )


def is_fashion(spec: str) -> bool:
    return spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":")


def default_crop_margin(spec: str) -> float | None:
    """The margin data is cropped with unless chosen: 1.0 for ``captions:``, None for Fashion-MNIST (no crop), else
    (an image folder) VAR's 1.125."""
    from nextscale.data.transforms import CAPTION_MID_RESO, MID_RESO  # here: the CLI's parser loads no torch

    if is_fashion(spec):
        return None
    return CAPTION_MID_RESO if spec.startswith(CAPTIONS_PREFIX) else MID_RESO


def data_crop_margin(spec: str, chosen: float | None) -> float | None:
    """The margin ``spec`` is cropped with: ``chosen`` (``--crop-margin``) or the data's default.

    Raises:
        ValueError: a margin chosen for Fashion-MNIST, which is resized whole.
    """
    if chosen is not None and is_fashion(spec):
        raise ValueError(
            f"--crop-margin {chosen:g}: Fashion-MNIST images are resized whole, without a crop; leave out "
            "--crop-margin (it is for image folders and captioned images)"
        )
    return default_crop_margin(spec) if chosen is None else chosen


def manifest_crop_margin(manifest: dict[str, Any]) -> float | None:
    """The margin a token folder was made with: its manifest's ``crop_margin``, or for a folder made before the
    field its data's default (1.0 for captioned tokens, None for Fashion-MNIST, else 1.125)."""
    if CROP_MARGIN_FIELD in manifest:
        return manifest[CROP_MARGIN_FIELD]
    captioned = manifest.get("condition") == "text"
    return default_crop_margin(CAPTIONS_PREFIX if captioned else str(manifest.get("source", "")))


def _data_kind(spec: str) -> str:
    return "fashion" if is_fashion(spec) else "captions" if spec.startswith(CAPTIONS_PREFIX) else "images"


def tokenizer_run_margin(tokenizer: str | os.PathLike, spec: str) -> float | None:
    """The crop margin a tokenizer training run recorded (its config.json), when ``spec`` is data of the kind it
    trained on; None for anything else (a pipeline or component folder, an official file, a transformer run, a run
    made before the margin was recorded, or data of another kind).

    Args:
        tokenizer: ``tokenize --tokenizer``'s value.
        spec: ``tokenize --data``'s value.
    """
    from pathlib import Path

    folder = Path(tokenizer)
    if not folder.is_dir():
        return None
    saved = recorded_run_config(folder)
    if not saved or saved.get("kind") != "tokenizer" or CROP_MARGIN_FIELD not in saved:
        return None
    if _data_kind(str(saved.get("data") or "")) != _data_kind(spec):
        return None
    return saved[CROP_MARGIN_FIELD]


def tokenize_crop_margin(spec: str, chosen: float | None, tokenizer: str | os.PathLike) -> tuple[float | None, str]:
    """The margin ``tokenize`` crops ``spec`` with, and the line that says where it comes from ("" for the data's
    default, unremarkable): ``chosen``, else the tokenizer run's (``tokenizer_run_margin``), else the data's.

    Raises:
        ValueError: a margin chosen for Fashion-MNIST, which is resized whole.
    """
    margin = data_crop_margin(spec, chosen)
    trained = tokenizer_run_margin(tokenizer, spec)
    if trained is None or trained == margin:
        return margin, ""
    if chosen is None:
        note = (
            f"crop margin {trained:g}, which the tokenizer run {tokenizer} trained with (its config.json); "
            "--crop-margin R chooses another"
        )
        return trained, note
    note = (
        f"--crop-margin {chosen:g}, but the tokenizer run {tokenizer} was trained with crop margin {trained:g} (its "
        "config.json): these tokens are cropped otherwise than its training images"
    )
    return chosen, note


def run_crop_margin(args: argparse.Namespace) -> dict[str, Any]:
    """Settle the margin of a training run (``train-tokenizer``, ``train``) and set ``args.crop_margin`` to it (None:
    Fashion-MNIST, no crop). See the module docstring for the rules.

    Args:
        args: parsed flags: ``crop_margin`` (None unless chosen), ``data``, ``run_dir`` and, for ``train``,
            ``tokens``.

    Returns:
        The run-config entries that record it: ``{"crop_margin": R}``, or nothing for Fashion-MNIST and for a run
        made before the field (its config.json stays as it was).

    Raises:
        ValueError: one line, for a value the resumed run or the token folder was not made with.
    """
    margin, record = settled_crop_margin(args)
    args.crop_margin = margin
    return record


def check_crop_margin(args: argparse.Namespace) -> None:
    """Refuse a --crop-margin the run cannot take (Fashion-MNIST, another than a resumed run's or its token folder's)
    before the run directory is made: ``run_crop_margin``'s refusals, reading files only and changing nothing, so a
    command that fails leaves no run folder behind. Call it once --data, --tokens and --run-dir are known."""
    settled_crop_margin(args)


def settled_crop_margin(args: argparse.Namespace) -> tuple[float | None, dict[str, Any]]:
    """The margin ``run_crop_margin`` settles and the run-config entries that record it; ``args`` is left as it is.

    Raises:
        ValueError: as ``run_crop_margin``.
    """
    from nextscale.data.token_manifest import read_manifest

    chosen, tokens = args.crop_margin, getattr(args, "tokens", None)
    if tokens:
        made = manifest_crop_margin(read_manifest(tokens))
        if chosen is not None and made is None:
            raise ValueError(
                f"--crop-margin {chosen:g}: --tokens {tokens} holds Fashion-MNIST tokens, resized whole without a "
                "crop; leave out --crop-margin"
            )
        if chosen is not None and chosen != made:
            raise ValueError(
                f"--crop-margin {chosen:g}, but --tokens {tokens} was made with crop margin {made:g} (its "
                f"manifest.json): leave out --crop-margin to use the token folder's, or tokenize again with "
                f"--crop-margin {chosen:g}"
            )
    else:
        made = data_crop_margin(args.data, chosen)
    saved = recorded_run_config(args.run_dir)
    if saved is None:  # a new run: records what it crops with
        margin = chosen if chosen is not None else made
        return margin, {} if margin is None else {CROP_MARGIN_FIELD: margin}
    # A run made before the field cropped with its data's default: its token folder's, or its --data's.
    trained = saved.get(CROP_MARGIN_FIELD, made if tokens else default_crop_margin(args.data))
    _refuse_other_margin(args.run_dir, CROP_MARGIN_FIELD in saved, trained, chosen, tokens, made)
    return trained, {CROP_MARGIN_FIELD: trained} if CROP_MARGIN_FIELD in saved else {}


def _refuse_other_margin(
    run_dir: str | os.PathLike,
    recorded: bool,
    trained: float | None,
    chosen: float | None,
    tokens: str | None,
    made: float | None,
) -> None:
    """Raise when a resumed run (cropped with ``trained``) would now crop otherwise: a ``chosen`` margin, or a token
    folder remade with another (``made``)."""
    where = "its config.json" if recorded else "its data's default, from before the margin was recorded"
    shown = _shown(trained)
    if chosen is not None and chosen != trained:
        raise ValueError(
            f"--crop-margin {chosen:g}, but the run in {run_dir} was trained with crop margin {shown} ({where}): "
            "resume it without --crop-margin, or start a new --run-dir for the new margin"
        )
    if tokens and made != trained:
        raise ValueError(
            f"--tokens {tokens} was made with crop margin {_shown(made)} (its manifest.json), but the run in {run_dir} "
            f"was trained with {shown} ({where}): resume it on tokens made with --crop-margin {shown}, or start a "
            "new --run-dir"
        )


def _shown(margin: float | None) -> str:
    return "none (no crop)" if margin is None else f"{margin:g}"
