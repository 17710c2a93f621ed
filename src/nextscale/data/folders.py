"""Image-folder layouts and the held-out split carved from a folder that has none.

Two layouts are understood::

    DIR/train/class_a/*.png  DIR/val/class_a/*.png     ImageNet layout: val/ (or validation/, test/) is held out
    DIR/class_a/*.png        DIR/class_b/*.png         plain folder: a small held-out split is carved from it

``DIR/train`` itself, given where ``DIR`` was meant, reads as ``DIR``: its ``val/`` sibling is the held-out set.
A ``train/`` that holds images but no sub-folders, beside other class folders, is a class of a plain folder
(CIFAR-100 has a class named "train"), not the training split.

A plain folder (and a ``DIR/train`` without a held-out sibling) gives up ``HELD_OUT_FRACTION`` of each class,
rounded, and at least one image of every class that has two or more, so that evaluation sees every class
and training keeps every class. The images are drawn from each class's sorted file list with
``numpy.random.default_rng([HELD_OUT_SEED, class_index])`` among the files whose headers are usable (a corrupt
file is never held out in a good one's place), so the split depends only on the file names and which are bad:
``train-tokenizer``, ``tokenize --split train|val`` and ``train`` agree on it on every machine, and adding
images to one class leaves the other classes' splits alone.

Worked example: 60 images in 3 classes of 20 -> round(0.05 * 20) = 1 per class, so 3 held out and 57 trained
on; 6 classes of 10 -> round(0.5) = 0, raised to 1 per class, so 6 held out.

Captioned data (no classes) is carved by ``carve_held_out_by_name`` instead: each sample is held out when a hash
of its name (its path relative to the folder or manifest, or its shard key) and ``HELD_OUT_SEED`` falls below
``HELD_OUT_FRACTION``, so the split does not depend on listing order, and adding images never moves the
images already there from one split to the other (see ``nextscale.data.captions``).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nextscale.data.image_listing import is_hidden
from nextscale.data.images import ImageFolderDataset
from nextscale.data.transforms import MID_RESO

HELD_OUT_FRACTION = 0.05
HELD_OUT_SEED = 0
HELD_OUT_NAMES = ("val", "validation", "test")  # sub-folders of DIR that hold out DIR/train's classes
TRAIN_SPLITS = ("train",)
HELD_OUT_SPLITS = ("val", "test")


@dataclass(frozen=True)
class FolderLayout:
    """Where a data folder keeps its training images and its held-out images.

    Attributes:
        train_dir: the folder of class sub-folders to train on.
        held_out_dir: its held-out sibling (``val/``), or None when a split is carved from ``train_dir``.
    """

    train_dir: Path
    held_out_dir: Path | None

    @property
    def carved(self) -> bool:
        return self.held_out_dir is None


def folder_layout(root: str | os.PathLike) -> FolderLayout:
    """The layout of ``root``: ``root/train`` + ``root/val`` (or validation/test), ``root/train`` alone, or
    ``root`` itself as the class folders (with ``root/../val`` held out when ``root`` is a ``train/`` folder)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data folder {root} does not exist; pass --data fashion-mnist[:DIR] or a folder of "
            "class sub-folders (ImageNet layout: DIR/train and DIR/val)"
        )
    train_dir = root / "train"
    if not train_dir.is_dir() or _is_a_class(train_dir):
        # --data photos/train: its val/ sibling is what the user holds out (unless train/ is a class folder)
        if root.resolve().name in TRAIN_SPLITS and not _is_a_class(root.resolve()):
            return folder_layout(root.resolve().parent)
        return FolderLayout(root, None)
    held_out = next((root / name for name in HELD_OUT_NAMES if (root / name).is_dir()), None)
    return FolderLayout(train_dir, held_out)


def _is_a_class(train_dir: Path) -> bool:
    """Whether ``DIR/train`` is a class folder (images, no sub-folders) beside other class folders."""
    if any(path.is_dir() and not is_hidden(path.name) for path in train_dir.iterdir()):
        return False
    split_names = TRAIN_SPLITS + HELD_OUT_NAMES
    return any(
        path.is_dir() and not is_hidden(path.name) and path.name not in split_names
        for path in train_dir.parent.iterdir()
    )


def carve_held_out(labels: Sequence[int], fraction: float = HELD_OUT_FRACTION, seed: int = HELD_OUT_SEED) -> list[int]:
    """Indices of the held-out samples (see the module docstring for the rule), in ascending order.

    Args:
        labels: the class of every sample, samples in the folder's sorted order.
        fraction: share of each class to hold out (rounded; at least 1 for a class of 2 or more images).
        seed: picks which images; the same seed and file list give the same split.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    held_out = []
    for label, indices in sorted(by_class.items()):
        if len(indices) < 2:
            continue  # the only image of a class stays in training
        count = min(len(indices) - 1, max(1, round(fraction * len(indices))))
        order = np.random.default_rng([seed, label]).permutation(len(indices))
        held_out.extend(indices[int(i)] for i in order[:count])
    return sorted(held_out)


def carve_held_out_by_name(
    names: Sequence[str], fraction: float = HELD_OUT_FRACTION, seed: int = HELD_OUT_SEED
) -> list[int]:
    """Indices of the held-out samples of unlabelled (captioned) data, in ascending order.

    Sample ``i`` is held out when ``name_draw(names[i], seed) < fraction``: whether a sample is held out depends on
    its own name alone, not on the listing order or on the other samples, so adding images moves none of the
    others (a threshold, not the lowest ``round(fraction * n)`` draws, which would push one out per image added).
    The count is therefore about ``fraction`` of the samples, not exactly. Two rules bound it, as for classes: 2 or
    more samples hold out at least 1 (the lowest draw, when none is under ``fraction``) and keep at least 1 for
    training; fewer than 2 hold nothing out.

    Worked example: 100 images -> about 5 held out (each one's draw is uniform, so 5 on average, e.g. 3 to 8);
    10 images -> often none under 0.05, then the one with the lowest draw.

    Args:
        names: one stable name per sample (a relative path, a shard key), samples in any order.
        fraction: share of the samples to hold out, in [0, 1).
        seed: picks which samples; the same seed and name give the same answer on every machine and process.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    if len(names) < 2:
        return []
    draws = [name_draw(name, seed) for name in names]
    held_out = [index for index, draw in enumerate(draws) if draw < fraction]
    if not held_out:  # a small folder: its lowest draw, so that evaluation sees something
        held_out = [min(range(len(names)), key=draws.__getitem__)]
    elif len(held_out) == len(names):  # every draw fell under ``fraction``: the highest one stays in training
        held_out.remove(max(held_out, key=draws.__getitem__))
    return held_out


def name_draw(name: str, seed: int = HELD_OUT_SEED) -> float:
    """A number in [0, 1) fixed by ``name`` and ``seed`` alone: the first 8 bytes of their BLAKE2b hash (Python's
    ``hash`` of a string changes from process to process, so DDP ranks would disagree)."""
    text = f"{seed}\0{name}".encode("utf-8", "surrogateescape")  # undecodable file names still hash
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2.0**64


def select(dataset: ImageFolderDataset, indices: Sequence[int], origin: str) -> ImageFolderDataset:
    """A copy of ``dataset`` holding only ``samples[i]`` for ``i`` in ``indices`` (classes unchanged)."""
    subset = copy.copy(dataset)
    subset.samples = [dataset.samples[i] for i in indices]
    subset.origin = origin
    return subset


def open_image_folder(
    root: str | os.PathLike,
    size: int,
    channels: int,
    seed: int = 0,
    split: str | None = None,
    bad_images: str = "fail",
    random_crops: bool = False,
    mid_reso: float = MID_RESO,
) -> tuple[ImageFolderDataset, ImageFolderDataset | None]:
    """(train, held-out) datasets of an image folder in either layout; the held-out set uses center crops.

    Args:
        root: the data folder.
        size: image side in pixels.
        channels: 3 or 1.
        seed: seed of the training crops (not of the held-out split, which is fixed).
        split: None for both; "train" or "val"/"test" for that split alone (center crops), as the first element.
        bad_images: "skip" or "fail", see ``ImageFolderDataset``.
        random_crops: with ``split`` "train": the training transform (random crops drawn from ``seed`` and the
            epoch, as training makes them) instead of center crops; tokenizing several views uses it.
        mid_reso: the crop margin (``--crop-margin``) of every split: the shorter side is resized to
            ``round(mid_reso * size)`` before the crop (VAR's 1.125 by default; 1.0 keeps the whole shorter side).

    Returns:
        (train, held_out); ``held_out`` is None only for a folder too small to hold anything out. Each dataset's
        ``origin`` says where its images come from.
    """
    layout = folder_layout(root)
    options = {"size": size, "channels": channels, "bad_images": bad_images, "mid_reso": mid_reso}
    if split is not None and split not in TRAIN_SPLITS + HELD_OUT_SPLITS:
        raise ValueError(f"split must be one of {TRAIN_SPLITS + HELD_OUT_SPLITS}, got {split!r}")
    if not layout.carved:
        if split != "train":
            _check_held_out_has_classes(layout)
        if split in HELD_OUT_SPLITS:
            held_out = ImageFolderDataset(layout.held_out_dir, train=False, **options)
            # Labels are positions in the sorted class list: val/ alone must list train/'s classes, or a class
            # missing from val/ would shift the labels of the classes after it (tokenize --split val).
            _check_same_classes(layout, ImageFolderDataset.class_names(layout.train_dir), held_out.classes)
            return held_out, None
        train = ImageFolderDataset(layout.train_dir, train=split is None or random_crops, seed=seed, **options)
        if split is not None:
            return train, None
        held_out = ImageFolderDataset(layout.held_out_dir, train=False, **options)
        _check_same_classes(layout, train.classes, held_out.classes)
        return train, held_out
    train = ImageFolderDataset(layout.train_dir, train=split is None or random_crops, seed=seed, **options)
    # Carved from the files whose headers are usable: a corrupt file must not take a class's held-out place.
    usable = train.usable_indices()
    held_indices = [usable[i] for i in carve_held_out([train.samples[i][1] for i in usable])]
    kept = sorted(set(range(len(train.samples))) - set(held_indices))  # bad files stay: skipped and counted there
    note = held_out_note(layout.train_dir, len(held_indices), len(usable), len(train.samples) - len(usable))
    carved_from = f"{layout.train_dir} (carved out, as there is no {HELD_OUT_NAMES[0]}/ folder)"
    evaluation = train.center_cropped()  # the same listing: its files are checked (and warned about) once
    if split in HELD_OUT_SPLITS:
        if not held_indices:
            raise ValueError(
                f"{layout.train_dir} has no {HELD_OUT_NAMES[0]}/ folder and too few usable images per class to "
                "hold any out (a class needs 2 or more); add DIR/train and DIR/val folders"
            )
        return _noted(select(evaluation, held_indices, carved_from), note), None
    images = "image" if len(held_indices) == 1 else "images"
    held = f" (without the {len(held_indices)} held-out {images})" if held_indices else ""  # none: the folder itself
    without = f"{layout.train_dir}{held}"
    training = _noted(select(train, kept, without), note)
    if split is not None or not held_indices:
        return training, None
    return training, _noted(select(evaluation, held_indices, carved_from), note)


def _check_held_out_has_classes(layout: FolderLayout) -> None:
    """A held-out folder of loose images (ImageNet's val/ comes so) has no labels: say how to go on."""
    held_out = layout.held_out_dir
    if any(path.is_dir() and not is_hidden(path.name) for path in held_out.iterdir()):
        return
    raise ValueError(
        f"{held_out} holds no class sub-folders, so its images have no labels (ImageNet's validation images come "
        f"in one flat folder): sort them into the class folders of {layout.train_dir}, or move {held_out} away to "
        f"hold out {HELD_OUT_FRACTION * 100:g} % of {layout.train_dir} instead"
    )


def _check_same_classes(layout: FolderLayout, train_classes: list[str], held_out_classes: list[str]) -> None:
    if held_out_classes != train_classes:
        raise ValueError(
            f"{layout.held_out_dir} has classes {held_out_classes} but {layout.train_dir} has {train_classes}; "
            "both need the same class sub-folders (labels are the sorted folder names)"
        )


def _noted(dataset: ImageFolderDataset, note: str) -> ImageFolderDataset:
    dataset.split_note = note
    return dataset


def held_out_note(train_dir: Path | str, held_out: int, usable: int, bad: int, captioned: bool = False) -> str:
    """The data summary's held-out line for a split carved from a folder without ``val/``, e.g. ``held-out: 3 of
    the 60 images of DIR (5 %, at least 1 per class, seed 0), carved out as it has no val/ folder``. Datasets from
    ``open_image_folder`` carry it as ``split_note``, and so do caption datasets from ``open_caption_splits``
    (``captioned``: ``held-out: 3 of the 60 image-caption pairs of DIR (about 5 %, by a hash of each image's
    path, at least 1, seed 0), ...``; ``bad`` then counts the skipped samples)."""
    where = f"{train_dir} has no {HELD_OUT_NAMES[0]}/ folder"
    if held_out == 0:
        too_few = (
            "fewer than 2 usable image-caption pairs"
            if captioned
            else "no class with 2 or more usable images to hold one out"
        )
        return (
            f"held-out: none, so no held-out evaluation: {where} and {too_few} (add DIR/train and "
            f"DIR/{HELD_OUT_NAMES[0]} sub-folders)"
        )
    unit = "image-caption pairs" if captioned else "images"
    usable_images = f"{usable} usable {unit}" if bad else f"{usable} {unit}"
    skipped = ("skipped sample", "skipped samples") if captioned else ("bad file", "bad files")
    not_counted = f"; {bad} {skipped[bad != 1]} not counted" if bad else ""
    rule = (
        f"about {HELD_OUT_FRACTION * 100:g} %, by a hash of each image's path, at least 1"
        if captioned
        else f"{HELD_OUT_FRACTION * 100:g} %, at least 1 per class"
    )
    return (
        f"held-out: {held_out} of the {usable_images} of {train_dir} ({rule}, seed {HELD_OUT_SEED}{not_counted}), "
        f"carved out as it has no {HELD_OUT_NAMES[0]}/ folder"
    )
