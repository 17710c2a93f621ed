"""The reference side of `nextscale evaluate`: where a --reference reads, the key its cached features are stored
under, and its batches (an .npz in OpenAI's evaluation format streams its own)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from nextscale.cli.evaluate import CAPTIONS_PREFIX, FEATURE_BATCH, MIN_SET_SIZE


def refuse_split_folder(spec: str, path: Path, prefix: str = "") -> None:
    """Refuse a ``--reference`` folder laid out as ``train/`` plus a held-out split (``val/``, ``test/``): read whole,
    it mixes the training images (sorted first) into the reference, or, as class folders, makes each split a class.
    The message names both folders, prefixed as given (``captions:``)."""
    from nextscale.data.folders import HELD_OUT_NAMES

    held_out = next((path / name for name in HELD_OUT_NAMES if (path / name).is_dir()), None)
    if (path / "train").is_dir() and held_out is not None:
        raise ValueError(
            f"--reference {spec} holds a train/ and a {held_out.name}/ split; pass the images to compare with: "
            f"--reference {prefix}{held_out} (held out) or {prefix}{path / 'train'}"
        )


def reference_location(spec: str) -> str:
    """``--reference`` as the absolute place it reads, for the reference cache's key.

    The spec as typed is not enough: ``--reference val`` names another folder from another working directory,
    and plain ``fashion-mnist`` follows $NEXTSCALE_FASHION_MNIST. Example: ``fashion-mnist`` ->
    ``fashion-mnist:/usr/share/datasets/fashion-mnist``; ``captions:data/test`` -> ``captions:/home/me/data/test``.
    """
    if spec.startswith("fashion-mnist"):
        from nextscale.data.fashion_mnist import default_root

        root = spec.split(":", 1)[1] if ":" in spec else default_root()
        return f"fashion-mnist:{Path(root).resolve()}"
    if spec.startswith(CAPTIONS_PREFIX):
        return f"{CAPTIONS_PREFIX}{Path(spec.removeprefix(CAPTIONS_PREFIX)).resolve()}"
    return str(Path(spec).resolve())


def reference_key(spec: str, reference, size: int, channels: int, network: str) -> dict:
    """What the reference cache's features are of: the place, count, image size and channels, the feature
    network and, for a folder, captioned images or an .npz, a digest of its files' names, sizes and modification
    times (a folder whose images were replaced by as many others must not reuse the old features; Fashion-MNIST's
    are fixed). ``reference`` may be a ``Subset`` (a text model's first --num captioned images).

    ``channels`` is how the reference is read (the model's; 3 for ``--samples``), recorded where that can change
    the images: a folder of colour images read as gray. Fashion-MNIST is gray (read as RGB, the gray channel three
    times, as the feature networks see gray anyway) and an .npz is RGB: model and ``--samples`` runs share its cache.
    """
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.sample_sets import SampleSet

    if isinstance(reference, FashionMNIST):
        channels = 1
    elif isinstance(reference, SampleSet):
        channels = 3
    key = dict(reference=reference_location(spec), split="test", count=len(reference), size=size, channels=channels)
    files = reference_files(reference)
    if files:
        digest = hashlib.sha256()
        for path in files:
            stat = Path(path).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        key["files"] = digest.hexdigest()[:16]
    return {**key, "features": network}


def reference_files(reference) -> list[Path]:
    """The files a reference's images are read from, in order: an .npz (or a sample folder's images), a folder's
    images, a caption source's images (each ``.tar`` shard once); none for Fashion-MNIST, whose files are fixed."""
    from nextscale.data.caption_base import CaptionDataset
    from nextscale.data.images import ImageFolderDataset
    from nextscale.data.sample_sets import SampleSet

    indices = None
    if isinstance(reference, torch.utils.data.Subset):
        reference, indices = reference.dataset, reference.indices
    if isinstance(reference, SampleSet):
        return [reference.path] if reference.files is None else reference.files
    if isinstance(reference, ImageFolderDataset):
        paths = [path for path, _ in reference.samples]
    elif isinstance(reference, CaptionDataset):
        sources = (sample.source for sample in reference.samples)
        paths = [source if isinstance(source, Path) else source.shard for source in sources]  # TarMember: its shard
    else:
        return []
    if indices is not None:
        paths = [paths[index] for index in indices]
    return list(dict.fromkeys(paths))  # a shard holds many images; its size and time cover all of them


def open_npz_reference(spec: str, size: int, features: str):
    """``--reference IMAGES.npz``: real images in OpenAI's evaluation format (arr_0 uint8 (N, H, W, 3), e.g. the
    ADM reference batch VIRTUAL_imagenet256_labeled.npz that published ImageNet FIDs are measured against), read
    as they are: at the samples' size, for the standard Inception features."""
    from nextscale.data.sample_sets import SampleSet

    if features != "inception":
        raise ValueError(
            f"--reference {spec}: an .npz reference is for the standard Inception features; drop --features {features}"
        )
    reference = SampleSet(spec)
    if reference.side != size:
        raise ValueError(
            f"--reference {spec} holds {reference.side} px images, the samples are {size} px: give a reference of "
            "the samples' size (an .npz is read as it is, not resized)"
        )
    if len(reference) < MIN_SET_SIZE:
        raise ValueError(f"--reference {spec} holds {len(reference)} image(s); give at least {MIN_SET_SIZE}")
    return reference


def reference_batches(reference):
    """The (images, labels) batches of a reference: an .npz (``SampleSet``) streams its own, a dataset loads; the
    images of a folder go through ``ReadableReference`` (each its own, unreadable ones left out or refused)."""
    from nextscale.data.sample_sets import SampleSet

    dataset = reference.dataset if isinstance(reference, ReadableReference) else reference
    if isinstance(dataset, SampleSet):
        return dataset.batches(FEATURE_BATCH)
    if isinstance(reference, ReadableReference):
        return ReadableBatches(reference, batch_size=FEATURE_BATCH, shuffle=False, collate_fn=collate_readable)
    return torch.utils.data.DataLoader(reference, batch_size=FEATURE_BATCH, shuffle=False)


class ReadableReference(torch.utils.data.Dataset):
    """The images of an image folder or captioned images, each read as it is: item i is (image (C, H, W) float32 in
    [-1, 1], its label; a caption dataset's: its index), or None for a file that cannot be decoded when
    ``leave_out`` (recorded in ``left_out``); without ``leave_out`` such a file is a ValueError naming it.

    The datasets' ``__getitem__`` returns the next readable image in place of a truncated one (which keeps a training
    run going); for FID that image would be counted twice and the bad one never reported. A folder's header check
    (``check_bad_images``) finds most bad files before this; a truncated file passes it and is found only here.

    Args:
        dataset: an ``ImageFolderDataset`` or ``CaptionDataset`` (anything with ``read(index)``), or a ``Subset`` of
            one (its images in the subset's order; the index given for a caption image is the caption dataset's);
            other datasets (Fashion-MNIST's arrays, nothing to decode) are read through their ``__getitem__``, and
            an .npz (``SampleSet``) streams its own batches (``reference_batches``).
        leave_out: True for ``--bad-images skip``: leave such files out (``collate_readable`` drops them).
        fix: what the error says besides replacing or deleting the file, when not ``leave_out``.
    """

    def __init__(self, dataset, leave_out: bool, fix: str = "or pass --bad-images skip to leave it out") -> None:
        self.indices = range(len(dataset))
        if isinstance(dataset, torch.utils.data.Subset):
            dataset, self.indices = dataset.dataset, dataset.indices
        self.dataset, self.leave_out, self.fix = dataset, leave_out, fix
        self.left_out: list[tuple[str, str]] = []  # (file, why), in the order read
        self.read_through = False  # set once ``ReadableBatches`` has read every image (no cache stood in for it)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int] | None:
        from nextscale.data.images import ImageFolderDataset

        index = self.indices[position]
        read = getattr(self.dataset, "read", None)
        if read is None:
            return self.dataset[index]
        try:
            image, target = read(index)  # ``read`` never substitutes another image
        except ValueError as err:
            name, why = _unreadable(self.dataset, index, err)
            if not self.leave_out:
                raise ValueError(
                    f"reference image {name} cannot be decoded ({why}); replace or delete it, {self.fix} (no other "
                    "image may stand in for it)"
                ) from err
            self.left_out.append((name, why))
            return None
        return image, target if isinstance(self.dataset, ImageFolderDataset) else index


def _unreadable(dataset, index: int, err: ValueError) -> tuple[str, str]:
    """(the file, why it cannot be used) of an image ``read`` refused: a folder's ``BadImageError`` says both, a
    caption dataset's error is about its sample's ``name``."""
    from nextscale.data.image_reading import BadImageError

    if isinstance(err, BadImageError):
        return str(err.path), f"{err.reason}: {err.detail}"
    return str(dataset.samples[index].name), str(err.__cause__ or err)


def collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A batch of the readable items (None: the images ``ReadableReference`` left out), or None when none is."""
    kept = [item for item in items if item is not None]
    return torch.utils.data.default_collate(kept) if kept else None


class ReadableBatches(torch.utils.data.DataLoader):
    """A loader of a ``ReadableReference`` that skips a batch whose images were all left out (a DataLoader still,
    so the feature bar knows the total).

    Raises:
        ValueError: every image was left out (else the feature pass would only say it was given no images).
    """

    def __iter__(self):
        kept = 0
        for batch in super().__iter__():
            if batch is not None:
                kept += 1
                yield batch
        self.dataset.read_through = True
        if kept == 0 and self.dataset.left_out:
            raise ValueError(
                f"none of the {len(self.dataset)} reference images can be decoded: {_named(self.dataset.left_out)}; "
                "replace them, or give another --reference"
            )


SHOWN_LEFT_OUT = 3  # files named in the warning; the rest are counted


def header_left_out(reference) -> list[tuple[str, str]]:
    """(file, reason) of the reference images the header check took out before any decoding (unreadable, tiny or
    huge: a folder's ``check_bad_images`` under ``--bad-images skip``, a caption source's index), in folder order.

    Call it before the images are read: a folder's ``left_out`` later also takes the files that failed to decode.
    ``reference`` may be a ``Subset`` (a text model's first N captioned images): the files are its source's.
    """
    from nextscale.data.caption_base import CaptionDataset
    from nextscale.data.images import ImageFolderDataset

    dataset = reference.dataset if isinstance(reference, torch.utils.data.Subset) else reference
    if isinstance(dataset, ImageFolderDataset):
        return [(str(path), dataset.skipped[path]) for path in dataset.left_out]
    if isinstance(dataset, CaptionDataset):
        return list(dataset.bad_files)
    return []


def left_out_entries(header: Sequence[tuple[str, str]], read: ReadableReference | None) -> list[dict[str, str]]:
    """The report's ``reference_left_out``: every reference image not measured, each once with why, those the
    header check refused first (``header_left_out``), then those that failed to decode (``read.left_out``)."""
    decoded = [] if read is None else read.left_out
    return [{"file": name, "reason": why} for name, why in [*header, *decoded]]


def _named(files: list[tuple[str, str]]) -> str:
    """``a (why), b (why), c (why) and 2 more``: the first ``SHOWN_LEFT_OUT`` files, the rest counted."""
    named = ", ".join(f"{name} ({why})" for name, why in files[:SHOWN_LEFT_OUT])
    more = len(files) - SHOWN_LEFT_OUT
    return named + (f" and {more} more" if more > 0 else "")


def left_out_warnings(
    spec: str,
    usable: int,
    read: ReadableReference,
    real_count: int,
    cache: Path | None,
    header: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The report's lines about reference images that were not measured: those the header check refused
    (``header``, named), those ``read`` found undecodable in this run (named), and, with features from ``cache``,
    any more that the run which wrote it left out (counted: which ones it did not record).

    Args:
        usable: the reference images that passed the header check (before any were left out for failing to decode).
        real_count: the reference features measured (or read from the cache).

    Raises:
        ValueError: fewer than ``MIN_SET_SIZE`` images are left (precision/recall needs 3 neighbours per image), or
            the cache left out images under ``--bad-images fail`` (``read`` does not leave out).
    """
    if real_count < MIN_SET_SIZE:
        raise ValueError(
            f"--reference {spec} holds {real_count} image(s) that can be decoded; give at least {MIN_SET_SIZE}"
        )
    lines = header_warnings(spec, usable, header)
    if read.left_out:
        them = "it" if len(read.left_out) == 1 else "them"
        lines.append(
            f"left out {len(read.left_out)} of the {usable} reference images of {spec}, which cannot be decoded: "
            f"{_named(read.left_out)}; FID, KID and precision/recall compare with the other {real_count} (replace or "
            f"delete {them}, or pass --bad-images fail to stop at such a file)"
        )
    unnamed = usable - real_count - len(read.left_out)
    if unnamed > 0 and cache is not None and not read.leave_out:  # --bad-images fail: no image left out unasked
        raise ValueError(
            f"the reference cache {cache} holds the features of {real_count} of the {usable} images of {spec}: the "
            f"run that wrote it left out {unnamed} that could not be decoded, and --bad-images fail stops at such a "
            "file; delete the cache to read the folder again (naming them), or pass --bad-images skip"
        )
    if unnamed > 0 and cache is not None:
        more = "more " if read.left_out else ""
        lines.append(
            f"the reference cache {cache} holds the features of {real_count} of the {usable} images of {spec}: the "
            f"run that wrote it left out {unnamed} {more}that could not be decoded (its warning named them; delete "
            "the cache to read the folder again)"
        )
    return lines


def header_warnings(spec: str, usable: int, header: Sequence[tuple[str, str]]) -> list[str]:
    """The report's line naming the reference files the header check refused (``header_left_out``) beside the
    ``usable`` ones, or none."""
    if not header:
        return []
    them = "it" if len(header) == 1 else "them"
    return [
        f"left out {len(header)} of the {usable + len(header)} reference files of {spec}, which the header check "
        f"refused before decoding: {_named(header)}; replace or delete {them}, or pass --bad-images fail to stop at "
        "such a file"
    ]
