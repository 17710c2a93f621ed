"""``nextscale evaluate --edit inpaint|outpaint``: zero-shot editing of real images, measured.

N real images spread through the reference (as ``--reconstructions`` takes them) are edited in batches: each keeps
its tokens outside (inpaint) or inside (outpaint) ``--box`` and the rest is regenerated towards ``--edit-target``:
its own class (the default), the next class (label + 1 mod C: a class edit), or none (the null class). The edited
images are scored like samples (FID, KID, precision/recall against the reference; with the bundled Fashion-MNIST
classifier, class consistency with the target and, for class edits, how often the original class survives).
Beside them, what an edit that changed nothing scores: the input images themselves and their tokenizer
reconstructions (an edit decodes the kept tokens too, so the reconstructions are its floor).
The inputs are the reference's own images, so every FID here is lower than a sampling FID at equal N; compare the
edits with their baselines, not with sampling.

A text model edits the first N images of its --reference captions:PATH towards their own captions (see
``cli/evaluate_text_edit.py``; on Fashion-MNIST scenes --edit-target next changes the boxed quadrants' items and the
adherence judge scores the result).

Example (the bundled model, the centre quarter regenerated as the next class, 1,000 test images):
    nextscale evaluate --edit inpaint --box 0.25 0.25 0.75 0.75 --edit-target next --num 1000 \\
        --features classifier --cfg 3 --top-k 10
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# evaluation.generate.EDIT_TARGETS, spelled out: building the CLI parser must not import torch (a test holds them equal)
EDIT_TARGETS = ("own", "next", "none")
DEFAULT_BOX = (0.25, 0.25, 0.75, 0.75)  # the centre quarter of the image
EDIT_FLAGS = (("edit", "--edit"), ("box", "--box"), ("edit_target", "--edit-target"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("zero-shot editing, measured (class models; text models on their --reference)")
    group.add_argument(
        "--edit",
        choices=("inpaint", "outpaint"),
        default=None,
        help="edit N real images of the reference instead of sampling: inpaint regenerates --box, outpaint keeps it "
        "and regenerates the rest; reported beside the inputs and their reconstructions",
    )
    group.add_argument(
        "--box",
        type=float,
        nargs=4,
        metavar=("Y0", "X0", "Y1", "X1"),
        default=None,
        help="with --edit: the region as fractions of the image, rows first as in `nextscale edit --box` "
        f"(default {' '.join(map(str, DEFAULT_BOX))}: the centre quarter)",
    )
    group.add_argument(
        "--edit-target",
        choices=EDIT_TARGETS,
        default=None,
        help="with --edit: what the regenerated part aims at: own (the image's class or first caption, default), "
        "next (class label + 1 mod C: a class edit; on Fashion-MNIST scenes, each boxed quadrant's item moved on), "
        "none (the null class or the empty prompt)",
    )


def check_edit_flags(args: argparse.Namespace) -> None:
    """Refuse --box / --edit-target without --edit, and --edit beside the other kinds of measurement."""
    if args.edit is None:
        for name, flag in EDIT_FLAGS[1:]:
            if getattr(args, name) is not None:
                raise ValueError(f"{flag} belongs to --edit inpaint|outpaint; give --edit too, or leave {flag} out")
        return
    for name, flag in (("reconstructions", "--reconstructions"), ("baseline", "--baseline")):
        if getattr(args, name):
            raise ValueError(f"--edit reports the inputs and their reconstructions itself; leave out {flag}")


@dataclass(frozen=True)
class EditSettings:
    mode: str
    box: tuple[float, float, float, float]
    target: str
    keep_mask: torch.Tensor  # (side, side) bool on the last-scale grid

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "box": list(self.box),
            "target": self.target,
            "kept_fraction": round(float(self.keep_mask.float().mean()), 4),  # of the last scale's tokens
        }


def edit_settings(args: argparse.Namespace, side: int) -> EditSettings:
    """The keep mask of --edit and --box on the model's last-scale grid of ``side`` x ``side`` tokens (the same
    rounding as ``nextscale edit``); a box outside the image, or one that keeps all or nothing, is refused."""
    from nextscale.cli.edit import check_fraction_box
    from nextscale.sampling.editing import box_mask, keep_mask_for

    box = DEFAULT_BOX if args.box is None else tuple(args.box)
    check_fraction_box(list(box), pixels_flag=None)  # the CLI's words: evaluate takes fractions only
    region = box_mask(side, box)
    return EditSettings(args.edit, box, args.edit_target or "own", keep_mask_for(args.edit, region))
