"""``nextscale evaluate --edit`` of a text (STAR) model: its zero-shot edits of captioned reference images.

The first N reference images are edited, each towards a prompt made from its own first caption:
- ``own``: the caption itself (the edit should change nothing the caption does not allow);
- ``none``: the empty prompt;
- ``next`` (Fashion-MNIST scenes only, with a box made of whole quadrants): the caption of the image's layout with
  every boxed quadrant changed: an item becomes the next class (ankle boot -> T-shirt), an empty quadrant gets a
  T-shirt, so an edit swaps or adds an item (never removes one: a scene caption names at least one item).

The edits are scored like samples (FID and friends against the reference; on scenes, prompt adherence judged
against the target layouts, and for ``next`` also against the original ones), beside the inputs and their
tokenizer reconstructions judged against their own captions. FID compares with the whole reference, of which the
inputs are the first N.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from nextscale.cli.evaluate_edit import EditSettings, edit_settings
from nextscale.data.scenes import ITEM_NAMES, caption_for, check_layout

# The quadrants of a 64x64 scene as (y0, x0, y1, x1) fractions, in place order (top left, top right, ...).
QUADRANT_BOXES = ((0.0, 0.0, 0.5, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.0, 1.0, 0.5), (0.5, 0.5, 1.0, 1.0))
NUM_ITEMS = len(ITEM_NAMES)


@dataclass(frozen=True)
class TextEdit:
    """What a text model's edits aim at: the settings, one prompt per image, and the layouts to judge them by.

    Attributes:
        settings: mode, box, target and keep mask (``evaluate_edit.EditSettings``).
        prompts: the target prompt of each edited image.
        layouts: the target scene layout of each image (None: not scenes, or the empty prompt).
        original_layouts: the images' own layouts, for a ``next`` edit (how often the old item survives).
        inputs: the images edited (the reference's first ``len(prompts)``; the whole reference is FID's).
    """

    settings: EditSettings
    prompts: list[str]
    layouts: list | None
    original_layouts: list | None
    inputs: torch.utils.data.Dataset | None = None  # the edited images: the reference's first len(prompts)


def next_item(item: int | None) -> int:
    """The next class (9 -> 0) of an item; an empty quadrant gets class 0."""
    return 0 if item is None else (item + 1) % NUM_ITEMS


def boxed_places(box: tuple[float, float, float, float]) -> list[int]:
    """The quadrants a box covers exactly; a box that cuts through a quadrant has no scene caption to aim at."""
    inside = [
        place
        for place, (y0, x0, y1, x1) in enumerate(QUADRANT_BOXES)
        if box[0] <= y0 and box[1] <= x0 and y1 <= box[2] and x1 <= box[3]
    ]
    overlapping = [
        place
        for place, (y0, x0, y1, x1) in enumerate(QUADRANT_BOXES)
        if box[0] < y1 and y0 < box[2] and box[1] < x1 and x0 < box[3]
    ]
    if not inside or inside != overlapping:
        raise ValueError(
            f"--edit-target next on scenes moves on the items of whole quadrants; --box {' '.join(map(str, box))} "
            "cuts through one: give a quadrant or a union of them, e.g. --box 0 0 0.5 0.5 (top left)"
        )
    return inside


def text_edit(args: argparse.Namespace, side: int, captions: list[str], layouts: list | None) -> TextEdit:
    """The edit of ``captions``' images for --edit-target, checked before the model loads.

    Args:
        side: the model's last-scale side (the keep mask's grid).
        captions: the first caption of each image.
        layouts: their scene layouts when the adherence judge applies, else None.
    """
    settings = edit_settings(args, side)
    if settings.target == "own":
        return TextEdit(settings, list(captions), layouts, None)
    if settings.target == "none":
        return TextEdit(settings, [""] * len(captions), None, None)
    if layouts is None:
        raise ValueError(
            "--edit-target next moves on the items of Fashion-MNIST scenes, and these captions are not scene "
            "captions; use --edit-target own or none"
        )
    places = boxed_places(settings.box)
    targets = []
    for layout in layouts:
        moved = list(layout)
        for place in places:
            moved[place] = next_item(moved[place])
        targets.append(check_layout(moved))
    return TextEdit(settings, [caption_for(layout) for layout in targets], targets, list(layouts))


def format_edit_baselines(baselines: dict[str, dict]) -> str:
    """The report's ``edit_baselines`` as the lines printed under the edits' own rows: what an edit that changed
    nothing scores (the inputs, and their tokenizer reconstructions: an edit decodes its kept tokens too, so they
    are its floor), with the distances (when measured) and the adherence judged by the inputs' own captions.

    Example (``--features classifier`` on scenes)::

        baselines, an edit that changed nothing (reconstructions: the floor, as an edit decodes its kept tokens):
                     FID           KID ± std  precision   recall   item  empty  scene
          inputs    0.00               0 ± 0          1.000    1.000  0.950  0.990  0.880
           recon    1.23     0.0123 ± 0.0021        0.900    0.910  0.900  0.980  0.800
    """
    from nextscale.cli.evaluate_scores import format_kid

    def cell(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = f"{'':>8}  {'FID':>6}  {'KID ± std':>18}  {'precision':>9}  {'recall':>7}  {'item':>5}  {'empty':>5}  "
    lines = [
        "baselines, an edit that changed nothing (reconstructions: the floor, as an edit decodes its kept tokens):",
        header + f"{'scene':>5}",
    ]
    for name, label in (("inputs", "inputs"), ("reconstructions", "recon")):
        row = baselines.get(name, {})
        kid = format_kid(row["kid"], row["kid_std"]) if "kid" in row else "-"
        fid = None if row.get("fid") is None else max(row["fid"], 0.0)  # the inputs' -0.0002 is rounding: a distance
        adherence = (row.get("adherence") or {}).get("overall") or {}
        lines.append(
            f"{label:>8}  {cell(fid, 2):>6}  {kid:>18}  {cell(row.get('precision')):>9}  "
            f"{cell(row.get('recall')):>7}  {cell(adherence.get('item_accuracy')):>5}  "
            f"{cell(adherence.get('empty_accuracy')):>5}  {cell(adherence.get('scene_accuracy')):>5}"
        )
    if not any("adherence" in row for row in baselines.values()):
        lines.append("(item / empty / scene: not judged: the reference captions are not Fashion-MNIST scenes)")
    return "\n".join(lines)
