"""The base of the caption datasets: ``CaptionDataset`` and what every source shares.

``CaptionDataset`` checks and counts the candidate samples a source finds (``_accept``), draws one caption per
access, and decodes and transforms the image. Beside it: the skip reasons, the sample records (``CaptionedImage``,
``TarMember``, ``_Candidate``) and ``_image_stream``, which opens an image file or a shard member. The sources are
in ``caption_folders``, ``caption_manifests`` and ``caption_shards``; the behaviour they share is described in
the ``nextscale.data.captions`` docstring.
"""

from __future__ import annotations

import codecs
import copy
import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from nextscale.data.image_reading import (
    BAD_IMAGE_POLICIES,
    BadImageError,
    check_image_header,
    jpeg_reduction,
    open_header,
    upright,
)
from nextscale.data.transforms import CAPTION_MID_RESO, ImageTransform

# Named after the front door, so one name (nextscale.data.captions) filters every caption source's warnings.
logger = logging.getLogger("nextscale.data.captions")

# Reasons a sample is skipped; ``dataset.skipped`` has one count per reason (zero included).
SKIP_REASONS = (
    "missing_image",
    "corrupt_image",
    "tiny_image",
    "huge_image",
    "missing_caption",
    "empty_caption",
    "caption_not_utf8",
    "dotted_name",
    "bad_record",
    "unlisted_image",
)
# The reasons that are about an image file (``bad_images="fail"`` stops on these), by the image check's reason.
IMAGE_PROBLEMS = {"unreadable": "corrupt_image", "tiny": "tiny_image", "huge": "huge_image"}
SHOWN_EXAMPLES = 3
CAPTION_SUFFIX = ".txt"
# The names that make a folder a manifest's (``captions.open_caption_dataset``), first found wins: ours, then
# Hugging Face imagefolder's (whose records name their image ``file_name`` and their caption ``text``).
MANIFEST_NAMES = ("captions.jsonl", "captions.csv", "metadata.jsonl", "metadata.csv")

# Pillow signals unreadable files with OSError (incl. UnidentifiedImageError), ValueError or SyntaxError.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class TarMember:
    """Where one image's bytes lie inside an uncompressed tar shard."""

    shard: Path
    offset: int
    size: int


@dataclass(frozen=True)
class CaptionedImage:
    """One usable sample: a display name (path or ``shard.tar:key``), its captions and where its image is."""

    name: str
    captions: tuple[str, ...]
    source: Path | TarMember


@dataclass(frozen=True)
class _Candidate:
    """A sample found while indexing; ``problem`` (a SKIP_REASONS entry) marks it as skipped."""

    name: str
    captions: tuple[str, ...] = ()
    source: Path | TarMember | None = None
    problem: str | None = None


def _clean(captions: Iterable[str]) -> tuple[str, ...]:
    """The non-blank captions, stripped, each once (in first-seen order): a repeated line must not double a
    caption's chance of being drawn, as repeated manifest rows do not."""
    return tuple(dict.fromkeys(text.strip() for text in captions if text.strip()))


# How each skip reason reads in a log line (one, several) and, where it is not obvious, how to fix it.
_REASON_WORDS = {
    "missing_image": ("missing image", "missing images"),
    "corrupt_image": ("corrupt image", "corrupt images"),
    "tiny_image": ("tiny image", "tiny images"),
    "huge_image": ("huge image", "huge images"),
    "missing_caption": ("missing caption", "missing captions"),
    "empty_caption": ("empty caption", "empty captions"),
    "caption_not_utf8": ("caption not UTF-8", "captions not UTF-8"),
    "dotted_name": ("dotted name", "dotted names"),
    "bad_record": ("bad record", "bad records"),
    "unlisted_image": ("image without a manifest line", "images without a manifest line"),
}
REASON_FIXES = {
    "caption_not_utf8": "re-save as UTF-8, e.g. `iconv -f cp1252 -t utf-8 OLD > NEW` for Windows-1252 (ANSI) text",
    "tiny_image": "under 1/8 of the side: use larger images or a lower --resolution",
    "dotted_name": "a dot before the extension ends the webdataset key: rename without it",
    "bad_record": 'each line needs {"image": PATH, "caption": TEXT or [TEXTS]} (or "file_name" and "text")',
    "unlisted_image": "add a line for each to the manifest, or move them out of its folder",
}


def _plural(count: int, noun: str) -> str:
    """ "1 sample", "2 samples"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def skip_details(skipped: list[tuple[str, str]]) -> str:
    """The skipped samples of one source by reason, each with its first ``SHOWN_EXAMPLES`` examples and its fix, for
    one log line: ``1 caption not UTF-8 (a.txt; re-save as UTF-8, ...), 5 empty captions (b.png, c.png, d.png, ...)``.

    Args:
        skipped: (name, reason) pairs, reasons from ``SKIP_REASONS``, in the order found.
    """
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped:
        by_reason.setdefault(reason, []).append(name)
    parts = []
    for reason, names in by_reason.items():
        one, several = _REASON_WORDS[reason]
        shown = ", ".join(names[:SHOWN_EXAMPLES]) + (", ..." if len(names) > SHOWN_EXAMPLES else "")
        fix = f"; {REASON_FIXES[reason]}" if reason in REASON_FIXES else ""
        parts.append(f"{len(names)} {one if len(names) == 1 else several} ({shown}{fix})")
    return ", ".join(parts)


def _manifest_one_folder_up(where: str | os.PathLike) -> Path | None:
    """The manifest beside the folder ``where`` (``DIR/captions.jsonl`` for ``DIR/images``, as make-scenes writes
    them), or None: a folder of images passed in place of the folder holding their manifest."""
    folder = Path(where)
    if not folder.is_dir():
        return None
    return next((folder.parent / name for name in MANIFEST_NAMES if (folder.parent / name).is_file()), None)


def decode_caption_text(data: bytes) -> str:
    """A caption file's bytes as text: UTF-8, or UTF-16 or UTF-32 when a byte-order mark says so (Windows editors
    save "Unicode" text as UTF-16 with a mark); the mark is dropped. Without a mark only UTF-8 is read: other
    encodings cannot be told apart reliably, but UTF-16/32 without a mark holds NUL characters, which no UTF-8
    caption does, and is refused.

    Raises:
        UnicodeDecodeError: the bytes are not valid in the encoding they claim, or hold a NUL character.
    """
    # UTF-32 first: its little-endian mark (FF FE 00 00) starts with UTF-16's (FF FE).
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return data.decode("utf-32")  # the codec reads the mark, takes its byte order and drops it
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    text = data.decode("utf-8-sig")
    if "\x00" in text:  # valid UTF-8, but no caption holds NUL: UTF-16/32 without a mark ("a\x00 \x00c\x00...")
        position = data.index(b"\x00")
        raise UnicodeDecodeError("utf-8", data, position, position + 1, "NUL: UTF-16 or UTF-32 without a mark")
    return text


def _image_stream(source: Path | TarMember) -> Path | BinaryIO:
    if isinstance(source, Path):
        return source
    with open(source.shard, "rb") as handle:
        handle.seek(source.offset)
        return io.BytesIO(handle.read(source.size))


class CaptionDataset(Dataset):
    """Base of the caption datasets: indexing checks, skip counts, caption choice and the image transform.

    Subclasses find candidate samples and call ``_accept``. Each item is ``(image (channels, size, size)
    float32 in [-1, 1], caption str)``; a DataLoader batches the captions into a list of strings.

    Args:
        size: output side in pixels.
        train: random crop (True) or center crop (False) after resizing the shorter side.
        mid_reso: shorter side resized to ``round(mid_reso * size)`` before the crop (default 1.0: no margin;
            ``--crop-margin``).
        hflip: random horizontal flips; off by default because captions may say "left" or "right".
        channels: 3 (RGB) or 1 (grayscale).
        seed: caption choice and crop of sample ``index`` in epoch ``e`` come from ``default_rng([seed, e,
            index])``.
        check_images: open every image header at construction, so unreadable, tiny or huge files are skipped
            and counted up front (a few seconds per 100k local files; shards are read once).
        bad_images: "skip" (count and name the samples left out: bad images, missing, empty or undecodable
            captions, ...) or "fail" (raise ValueError naming them, with the fix).
    """

    def __init__(
        self,
        size: int,
        train: bool = True,
        mid_reso: float = CAPTION_MID_RESO,
        hflip: bool = False,
        channels: int = 3,
        seed: int = 0,
        check_images: bool = True,
        bad_images: str = "skip",
    ) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        if seed < 0:  # else every read would fail, and tokenizing would call the images bad
            raise ValueError(f"seed must be 0 or more (it seeds numpy.random.default_rng), got {seed}")
        self.transform = ImageTransform(size, train=train, mid_reso=mid_reso, hflip=hflip, channels=channels)
        self.bad_images = bad_images
        self.origin = ""  # where the samples come from, for logs (set by each source)
        self.split_note: str | None = None  # how a held-out split was carved from this source (data.captions)
        self.seed = seed
        self.epoch = 0
        self.check_images = check_images
        self.samples: list[CaptionedImage] = []
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.bad_files: list[tuple[str, str]] = []  # (image, reason) of the images left out, in order found
        self._reported_corrupt: set[str] = set()

    def _accept(self, candidates: Iterable[_Candidate], where: str | os.PathLike) -> None:
        """Keep the good candidates, count the rest, and log one summary line (``bad_images="fail"``: raise it)."""
        self.origin = str(where)
        skipped: list[tuple[str, str]] = []  # (name, reason) of every candidate left out, in order found
        for candidate in candidates:
            problem = candidate.problem
            if problem is None and not candidate.captions:
                problem = "empty_caption"
            if problem is None and self.check_images:
                problem = self._image_problem(candidate)
            if problem is None:
                self.samples.append(CaptionedImage(candidate.name, candidate.captions, candidate.source))
                continue
            self.skipped[problem] += 1
            skipped.append((candidate.name, problem))
            if problem in IMAGE_PROBLEMS.values():
                self.bad_files.append((candidate.name, problem.removesuffix("_image")))
        total = len(skipped) + len(self.samples)
        details = skip_details(skipped)
        captions_above = _manifest_one_folder_up(where)
        if skipped and self.bad_images == "fail" and not (captions_above and not self.samples):
            # a careful run loses no sample, whatever is wrong with it
            raise ValueError(
                f"{where}: {len(skipped)} of {_plural(total, 'sample')} cannot be used: {details}; fix or remove "
                "them, or pass --bad-images skip to go on without them"
            )
        if not self.samples:
            if captions_above is not None:
                fix = f"its captions are one folder up, in {captions_above}: pass captions:{captions_above.parent}"
            else:
                fix = (
                    "expected images with same-name .txt captions, a captions.jsonl or captions.csv manifest, or "
                    "webdataset .tar shards"
                )
            raise ValueError(f"{where} holds no usable image-caption pairs ({details or 'nothing found'}); {fix}")
        if skipped:
            logger.warning("%s: skipped %d of %s: %s", where, len(skipped), _plural(total, "sample"), details)

    def split_key(self, sample: CaptionedImage) -> str:
        """The name that decides whether ``sample`` is held out (``folders.carve_held_out_by_name``): one that stays
        the same on every machine and when the data moves or grows. Each source overrides it; this is the
        display name."""
        return sample.name

    def select(self, indices: Iterable[int], origin: str) -> CaptionDataset:
        """A copy holding only ``samples[i]`` for ``i`` in ``indices`` (in that order), named ``origin`` in logs.

        The construction counts (``skipped``, ``bad_files``) are the source's and stay shared; images that fail to
        decode later are counted per copy, as each copy reads only its own samples.
        """
        subset = copy.copy(self)
        subset.samples = [self.samples[index] for index in indices]
        subset.origin = origin
        subset._reported_corrupt = set()
        return subset

    def center_cropped(self) -> CaptionDataset:
        """The same samples read as held-out data is (center crops, no flips), without indexing the source again
        (which would repeat its warnings)."""
        view = copy.copy(self)
        t = self.transform
        view.transform = ImageTransform(t.size, train=False, mid_reso=t.mid_reso, hflip=False, channels=t.channels)
        view._reported_corrupt = set()
        return view

    @property
    def decode_failures(self) -> list[str]:
        """Images whose header passed but which failed to decode when read in this process (truncated files)."""
        return sorted(self._reported_corrupt)

    def named_bad_files(self) -> str:
        """The first bad images with their reasons, and how many more (for one log or error line)."""
        named = ", ".join(f"{name} ({reason})" for name, reason in self.bad_files[:SHOWN_EXAMPLES])
        more = len(self.bad_files) - SHOWN_EXAMPLES
        return named + (f" and {more} more" if more > 0 else "")

    def _image_problem(self, candidate: _Candidate) -> str | None:
        """None when the image's header is usable at this size, else the skip reason (header only: pixels are
        decoded at access)."""
        source = candidate.source
        if source is None:
            return "missing_image"
        try:
            if isinstance(source, Path):
                check_image_header(source, self.transform.size, shrink_jpeg=True)
            else:
                stream = _image_stream(source)
                check_image_header(candidate.name, self.transform.size, stream=stream, shrink_jpeg=True)
        except BadImageError as err:
            return IMAGE_PROBLEMS.get(err.reason, "corrupt_image")
        return None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose caption choices and crops ``seed`` reproduces."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, sample: CaptionedImage) -> Image.Image:
        try:
            with open_header(_image_stream(sample.source), Path(sample.name)) as image:
                if (factor := jpeg_reduction(image)) > 1:  # a photo over Pillow's pixel limit, decoded shrunk
                    image.draft(image.mode, (image.width // factor, image.height // factor))
                image.load()  # decode now: a truncated file fails here, not later in the transform
                return upright(image)
        except (*_READ_ERRORS, BadImageError) as err:
            raise ValueError(f"cannot read image {sample.name}: {err}") from err

    def _count_corrupt(self, name: str) -> bool:
        """Count an image that failed to decode, once per file; True the first time (to log it once)."""
        if name in self._reported_corrupt:
            return False
        self._reported_corrupt.add(name)
        self.skipped["corrupt_image"] += 1
        return True

    def read(self, index: int) -> tuple[torch.Tensor, tuple[str, ...]]:
        """Sample ``index`` exactly, for passes that must see every sample once (tokenizing): (image (channels,
        size, size) float32 in [-1, 1], all its captions). No stand-in: an image that cannot be decoded raises
        ValueError (and is counted in ``skipped["corrupt_image"]``)."""
        sample = self.samples[index]
        try:
            image = self._decode(sample)
        except ValueError:
            self._count_corrupt(sample.name)
            raise
        _, generator = self._draw_caption(sample, index)  # the crop ``__getitem__`` makes (tokenize --views)
        return self.transform(image, generator), sample.captions

    def _draw_caption(self, sample: CaptionedImage, index: int) -> tuple[str, np.random.Generator]:
        """(the caption of sample ``index`` this epoch, the generator that then draws its crop).

        The caption is drawn first, so the crop depends on it having been drawn: ``read`` draws it too, and its
        crop is the one ``__getitem__`` makes (a sample with one caption draws nothing for it).
        """
        generator = np.random.default_rng([self.seed, self.epoch, index])
        return sample.captions[int(generator.integers(len(sample.captions)))], generator

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """Returns (image (channels, size, size) float32 in [-1, 1], one of the sample's captions)."""
        for offset in range(len(self.samples)):
            sample = self.samples[(index + offset) % len(self.samples)]
            try:
                image = self._decode(sample)
            except ValueError as err:
                if self.bad_images == "fail":
                    raise ValueError(f"{err}; replace or delete it, or pass --bad-images skip") from err
                if self._count_corrupt(sample.name):
                    logger.warning("skipping unreadable image (using the next sample instead): %s", err)
                continue
            caption, generator = self._draw_caption(sample, index)
            return self.transform(image, generator), caption
        raise ValueError("no image of this dataset could be decoded; every file is corrupt")
