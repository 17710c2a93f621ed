"""Image files in and out: the ImageNet-style folder dataset, single-image loading, PIL conversion, grids.

Folder layout (as for ImageNet ``train/`` and ``val/``)::

    root/
      class_a/  001.png  002.jpg ...
      class_b/  ...

Classes are the sub-folder names in sorted order, so label ``i`` is ``classes[i]`` on every machine.

Bad files never stop a long run late. Each file is checked when it is read: unreadable (not an image, a
corrupt header), truncated (fails to decode), tiny (shorter side under ``max(TINY_PIXELS, TINY_FRACTION`` x the
training side); larger images smaller than the training side are upscaled), huge (more pixels than Pillow's
decompression-bomb limit ``Image.MAX_IMAGE_PIXELS``; a JPEG is instead decoded shrunk by 2, 4 or 8 to fit it,
``jpeg_reduction``) or of a mode Pillow cannot convert. Every mode is converted to the training channels (see
``transforms.convert_mode``: alpha on white, 16- and 32-bit scaled, colour profiles applied).
With ``bad_images="skip"`` a bad file is counted, logged once and replaced by the next good file in the
folder order (deterministic: the same on every rank, worker and resume); with ``"fail"`` it raises a
ValueError naming the file. ``ImageFolderDataset.scan`` checks every header up front (fast: nothing is
decoded), so most bad files are counted, or refused, before training starts; the commands then take them out
of the dataset (``leave_out_bad``), so only a file found bad when read (truncated) has a stand-in. A pass that
must see every image once (tokenizing) reads with ``ImageFolderDataset.read``, which has no stand-in: it raises.

References: VAR ``utils/data.py`` (ImageFolder + the VAR transform), torchvision ``make_grid`` (grid layout).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, JpegImagePlugin
from torch.utils.data import Dataset

from nextscale.data.transforms import BIT_DEPTH_KEY, MID_RESO, ImageTransform, convert_mode, file_bit_depth
from nextscale.pretrained import atomic_write

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # a GIF gives its first frame
# Files beside the images that are not meant as images (captions, annotations): ignored without a word.
COMPANION_EXTENSIONS = (".txt", ".json", ".jsonl", ".csv", ".xml", ".md")

# PIL signals unreadable or truncated files with OSError (incl. UnidentifiedImageError), ValueError or SyntaxError.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
BAD_IMAGE_POLICIES = ("skip", "fail")
BAD_IMAGE_REASONS = ("unreadable", "truncated", "tiny", "huge", "unsupported mode")
# A shorter side below max(TINY_PIXELS, TINY_FRACTION x the training side) is skipped: upscaling more than 8x
# trains on blur, and a map a few pixels wide holds no image. (48x40 photos still train at 256 px, upscaled.)
TINY_FRACTION = 0.125
TINY_PIXELS = 4
JPEG_REDUCTIONS = (2, 4, 8)  # the scales a JPEG decoder can shrink an image by while decoding (Image.draft)
SCAN_LIMIT = 50_000  # folders with more files are not scanned up front (about 1 ms a file); checked as read
# Folders no user put images in: macOS's zip tool stores resource forks in __MACOSX/, which unzips beside the
# class folders and would otherwise become class 0 (shifting every label) with no usable image.
SYSTEM_FOLDERS = ("__MACOSX",)


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is left out of image folders: hidden (a leading dot) or a system folder."""
    return name.startswith(".") or name in SYSTEM_FOLDERS


def visible_files(root: Path) -> list[Path]:
    """Every file under ``root`` in sorted order, hidden files and folders (``is_hidden``) left out.

    Linked folders are followed, each real folder once (a link back up the tree is not a loop), so a class
    folder assembled from symbolic links to other disks is read whole; ``Path.rglob`` would skip them.
    """
    files: list[Path] = []
    seen_folders: set[str] = set()
    for folder, folder_names, file_names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:
            folder_names[:] = []
            continue
        seen_folders.add(real)
        folder_names[:] = [name for name in folder_names if not is_hidden(name)]
        files.extend(Path(folder) / name for name in file_names if not name.startswith("."))
    return sorted(files)


class BadImageError(ValueError):
    """An image file training cannot use; ``reason`` is one of ``BAD_IMAGE_REASONS``."""

    def __init__(self, path: Path, reason: str, detail: str) -> None:
        fix = "replace or delete it" if reason != "huge" else "save a smaller copy (a few thousand pixels a side)"
        super().__init__(f"cannot use image {path} ({reason}: {detail}); {fix}, or pass --bad-images skip")
        self.path, self.reason, self.detail = path, reason, detail


def smallest_side(size: int) -> float:
    """The shortest image side usable for ``size`` px training; shorter images are skipped as "tiny"."""
    return max(TINY_PIXELS, TINY_FRACTION * size)


def jpeg_reduction(image: Image.Image) -> int:
    """1 for an image within Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``); for a JPEG over it,
    the least factor (2, 4 or 8) its decoder can shrink it by while decoding (``Image.draft``) that brings it
    within the limit; 0 when nothing does (not a JPEG). A shrunk decode never holds more pixels than the limit, so
    a 108- or 200-megapixel phone photo trains (at 1/2 or 1/4 size, still far above any training side) while a
    forged header claiming billions of pixels gets no bigger buffer than Pillow allows any image."""
    width, height = image.size
    limit = Image.MAX_IMAGE_PIXELS  # None: the user turned Pillow's check off (as its documentation says to)
    if limit is None or width * height <= limit:
        return 1
    if image.format != "JPEG":
        return 0
    return next((factor for factor in JPEG_REDUCTIONS if -(-width // factor) * -(-height // factor) <= limit), 0)


def _check_size(path: Path, image: Image.Image, size: int, shrink_jpeg: bool) -> None:
    width, height = image.size
    reduction = jpeg_reduction(image)
    if reduction == 0 or (reduction > 1 and not shrink_jpeg):  # a reader that decodes at full size cannot use it
        limit = Image.MAX_IMAGE_PIXELS
        raise BadImageError(path, "huge", f"{width}x{height} pixels, over the {limit} limit")
    smallest = smallest_side(size)
    if min(width, height) < smallest:
        raise BadImageError(path, "tiny", f"{width}x{height}, shorter side under {smallest:g} px ({size} px training)")


def open_header(source: Path | BinaryIO, shown: Path | None = None) -> Image.Image:
    """An image file opened, its header read but nothing decoded; a JPEG over twice Pillow's pixel limit (which
    ``Image.open`` refuses) opens too, to be decoded shrunk (``jpeg_reduction``).

    Raises:
        BadImageError: "unreadable", or "huge" for another kind of file over twice the limit (named ``shown``).
    """
    shown = shown or source
    try:
        with warnings.catch_warnings():  # DecompressionBombWarning: huge images are judged by _check_size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source)
    except Image.DecompressionBombError as err:  # Pillow refuses images over twice its limit when opening them
        try:  # a JPEG can still be decoded shrunk (``jpeg_reduction``): read its header without Pillow's check
            if hasattr(source, "seek"):  # a stream Image.open has read from
                source.seek(0)
            return JpegImagePlugin.JpegImageFile(source)
        except _READ_ERRORS:
            raise BadImageError(shown, "huge", str(err)) from err
    except _READ_ERRORS as err:
        raise BadImageError(shown, "unreadable", str(err) or type(err).__name__) from err


def upright(image: Image.Image) -> Image.Image:
    """A decoded copy of ``image`` turned as its EXIF orientation tag says (phone photos store their pixels
    sideways and record the turn): what every viewer shows, so that boxes and masks mean what the user sees.

    A 32-bit integer ("I") image keeps the bit depth its file declares in ``info`` (the copy has lost the file's
    tags), so that ``transforms.convert_mode`` scales a 16-bit file's pixels as 16-bit however dark they are."""
    turned = ImageOps.exif_transpose(image) or image.copy()
    if image.mode == "I" and (bits := file_bit_depth(image)) is not None:
        turned.info[BIT_DEPTH_KEY] = bits
    return turned


QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that turn the stored pixels by 90 degrees (transposed or not)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an opened, undecoded image as ``upright`` turns it: a phone photo stored sideways reports
    its upright size. Only the header's EXIF is read: a PNG whose eXIf chunk follows the pixels (Pillow would
    decode the image to find it) is taken as stored."""
    if image.format == "PNG" and "exif" not in image.info:
        return image.size
    try:
        orientation = image.getexif().get(0x0112)  # 0x0112: Orientation
    except _READ_ERRORS:  # a garbled EXIF block: viewers show the stored pixels, and so does ``upright``
        return image.size
    width, height = image.size
    return (height, width) if orientation in QUARTER_TURNS else (width, height)


def read_training_image(path: str | os.PathLike, size: int, channels: int) -> Image.Image:
    """Open, check and fully decode one training image, converted to RGB (3 channels) or L (1).

    Raises:
        BadImageError: the file is unreadable, truncated, tiny, huge or of an unconvertible mode.
    """
    path = Path(path)
    image = open_header(path)
    with image:
        _check_size(path, image, size, shrink_jpeg=True)
        if (factor := jpeg_reduction(image)) > 1:  # decoded shrunk: the full-size pixels are never held
            image.draft(image.mode, (image.width // factor, image.height // factor))
        try:
            image.load()  # decode now: a truncated file fails here, not in the middle of a batch
        except _READ_ERRORS as err:
            raise BadImageError(path, "truncated", str(err) or type(err).__name__) from err
        try:
            return convert_mode(upright(image), channels)
        except ValueError as err:
            raise BadImageError(path, "unsupported mode", f"{image.mode}: {err}") from err


def check_image_header(
    path: str | os.PathLike, size: int, stream: BinaryIO | None = None, shrink_jpeg: bool = False
) -> tuple[int, int]:
    """(width, height) from a file's header, without decoding it.

    Args:
        path: the file, or the name shown in messages when ``stream`` holds the bytes (an image inside a shard).
        size: the training side the image is judged against (tiny below 1/8 of it).
        stream: the image's bytes, when they do not lie in a file of their own.
        shrink_jpeg: the reader decodes a JPEG over Pillow's pixel limit shrunk (as ``read_training_image`` does,
            see ``jpeg_reduction``), so such a JPEG is not "huge".

    Raises:
        BadImageError: unreadable, tiny or huge.
    """
    path = Path(path)
    with open_header(path if stream is None else stream, shown=path) as image:
        _check_size(path, image, size, shrink_jpeg)
        return image.size


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode one image file, raising a ValueError that names the file if it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with warnings.catch_warnings():  # one photo the user chose: up to twice Pillow's limit is decoded quietly
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            image.load()  # decode now: a truncated file fails here, not later in a worker
            return upright(image)
    except Image.DecompressionBombError as err:  # over twice the limit (a 200-megapixel phone photo): not corrupt
        raise ValueError(
            f"image {path} is too large to open ({err}); save a smaller copy (a few thousand pixels a side is plenty)"
        ) from err
    except _READ_ERRORS as err:
        raise ValueError(
            f"cannot read image {path}: {err}. The file is corrupt or not an image; replace or delete it"
        ) from err


def load_image(path: str | os.PathLike, size: int, channels: int = 3, mid_reso: float = 1.0) -> torch.Tensor:
    """Load one image as the models see it: shorter side resized, center-cropped, in [-1, 1].

    Args:
        path: an image file readable by Pillow.
        size: output side in pixels.
        channels: 3 (RGB) or 1 (grayscale).
        mid_reso: shorter side is resized to ``round(mid_reso * size)`` before the center crop; the default
            1.0 keeps the whole shorter side (editing wants the full picture, not VAR's evaluation margin).

    Returns:
        float32 tensor (channels, size, size) in [-1, 1].
    """
    transform = ImageTransform(size, train=False, mid_reso=mid_reso, channels=channels)
    return transform(open_image(path))


def shared_bytes(count: int) -> torch.Tensor:
    """(count,) uint8 zeros in shared memory, which DataLoader workers write into and the main process reads; where
    shared memory cannot be had (a full or missing /dev/shm, as in small containers) a private tensor, so the
    dataset still works, its workers' findings then staying in the workers (as before they were shared)."""
    found = torch.zeros(count, dtype=torch.uint8)
    try:
        return found.share_memory_()
    except RuntimeError as err:
        logger.warning("no shared memory for the bad-file record (%s): files found bad in workers are not counted", err)
        return found


class ImageFolderDataset(Dataset):
    """``root/class_name/*.png|jpg|jpeg|webp`` as (image tensor in [-1, 1], label) pairs.

    Args:
        root: folder with one sub-folder per class (searched recursively for images).
        size: output side in pixels.
        train: VAR training transform (random crop, optional flip) or evaluation transform (center crop).
        mid_reso: see ``ImageTransform`` (VAR default 1.125).
        hflip: random horizontal flips in training.
        channels: 3 (RGB) or 1 (grayscale); every image mode is converted (see the module docstring).
        bad_images: "skip": a bad file is counted in ``skipped``, logged once, and the next good file in
            folder order is returned in its place; "fail" (default): a ``BadImageError`` names the file.
        seed: if given, the random crop and flip of sample ``index`` in epoch ``e`` come from
            ``numpy.random.default_rng([seed, e, index])``, identical across workers, machines and resumes
            (call ``set_epoch`` each epoch). If None, torch's global generator is used.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int,
        train: bool = True,
        mid_reso: float = MID_RESO,
        hflip: bool = False,
        channels: int = 3,
        bad_images: str = "fail",
        seed: int | None = None,
    ) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        if seed is not None and seed < 0:  # else every read would fail, and tokenizing would call the images bad
            raise ValueError(f"seed must be 0 or more (it seeds numpy.random.default_rng), got {seed}")
        self.root = Path(root)
        self.classes, self.samples = self.list_samples(self.root)
        self.class_to_idx = {name: idx for idx, name in enumerate(self.classes)}
        self.origin = str(self.root)  # where the images come from, for the data summary (see data.folders)
        self.transform = ImageTransform(size, train=train, mid_reso=mid_reso, hflip=hflip, channels=channels)
        self.bad_images = bad_images
        self.seed = seed
        self.epoch = 0
        # file -> reason, for files found bad (by ``scan`` or when read in this process); shared by ``select``
        # copies, so keyed by file, not by index.
        self.skipped: dict[Path, str] = {}
        # Files found bad while read in DataLoader worker processes, which hold copies of this dataset: one byte per
        # listed file in shared memory (0, or 1 + the index of its reason in BAD_IMAGE_REASONS), so that the main
        # process counts them too and later epochs' workers (forked after ``set_epoch`` gathers them) pass over them
        # without warning again. Positions are in ``listing`` (the files as listed; references, not copies); the
        # file -> position map is built only when a bad file is recorded (rare), not in every worker.
        self.found_in_workers = shared_bytes(len(self.samples))
        self.listing = [path for path, _ in self.samples]
        self.positions: dict[Path, int] | None = None
        self.headers: dict[Path, tuple[int, int]] = {}  # file -> (width, height) of usable headers, shared likewise
        self.left_out: list[Path] = []  # bad files taken out of ``samples`` by ``leave_out_bad`` (still counted)
        self.split_note: str | None = None  # how a held-out split was carved from this folder (data.folders)

    def center_cropped(self) -> ImageFolderDataset:
        """The same files read as held-out images are (center crops, no flips), without listing the folder again
        (which would repeat its warnings); file checks are shared, as with ``select``."""
        view = copy.copy(self)
        t = self.transform
        view.transform = ImageTransform(t.size, train=False, mid_reso=t.mid_reso, hflip=False, channels=t.channels)
        view.left_out = list(self.left_out)
        return view

    @staticmethod
    def class_names(root: Path) -> list[str]:
        """The sorted class sub-folder names of ``root`` (hidden and system folders such as macOS's ``__MACOSX``
        left out, see ``is_hidden``): label ``i`` is ``names[i]``."""
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (expected root/class_name/*.png)")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
        if not classes:
            raise ValueError(f"{root} has no class sub-folders; expected root/class_name/image.png")
        return classes

    @staticmethod
    def list_samples(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
        """(sorted class names, [(file, label)] in sorted order) of ``root/class_name/**/image``, hidden files and
        folders (``is_hidden``: names starting with a dot, ``__MACOSX``) left out."""
        classes = ImageFolderDataset.class_names(root)
        samples: list[tuple[Path, int]] = []
        ignored: list[Path] = []  # files of a kind this reader does not take (.heic, .avif, .svg, ...)
        for label, name in enumerate(classes):
            # Hidden files and folders are not images of the class: macOS's ``._photo.jpg`` resource forks would
            # count as corrupt files, and ``.ipynb_checkpoints/`` copies as duplicates (as caption folders skip them).
            # A folder named x.jpg is no image (``visible_files`` lists files); a broken link is reported as unreadable.
            visible = visible_files(root / name)
            files = [path for path in visible if path.suffix.lower() in IMAGE_EXTENSIONS]
            ignored.extend(
                path for path in visible if path.suffix.lower() not in IMAGE_EXTENSIONS + COMPANION_EXTENSIONS
            )
            if not files:
                logger.warning("class folder %s holds no images", root / name)
            samples.extend((path, label) for path in files)
        if ignored:
            kinds = sorted({path.suffix.lower() or "(no ending)" for path in ignored})
            logger.warning(
                "ignoring %d file(s) of %s in %s's class folders (e.g. %s): images are read from %s; convert them to "
                "use them",
                len(ignored),
                ", ".join(kinds),
                root,
                ignored[0],
                ", ".join(IMAGE_EXTENSIONS),
            )
        if not samples:
            raise ValueError(f"{root} holds no images with extensions {IMAGE_EXTENSIONS} in its class folders")
        return classes, samples

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops ``seed`` reproduces; the files the last epoch's workers found bad become
        known here, so that this epoch's workers pass over them without trying them again."""
        self.epoch = epoch
        self.gather_worker_findings()

    def __len__(self) -> int:
        return len(self.samples)

    def scan(self, limit: int = SCAN_LIMIT) -> dict[str, int] | None:
        """Check every file's header (nothing is decoded) and remember the bad ones, so reads skip them at once.

        Truncated files pass this check; they are caught when read. Returns the count of bad files per reason
        (plus "upscaled": usable files smaller than the training side), or None when the folder has more than
        ``limit`` files (checked only as they are read).
        """
        if len(self.samples) > limit:
            return None
        upscaled = 0
        for path, _ in self.samples:
            if path in self.skipped:
                continue
            if path not in self.headers:
                try:
                    self.headers[path] = check_image_header(path, self.transform.size, shrink_jpeg=True)
                except BadImageError as err:
                    self.record_bad(path, err.reason)
                    continue
            upscaled += min(self.headers[path]) < self.transform.size
        counts = self.skip_counts()
        counts["upscaled"] = upscaled
        return counts

    def usable_indices(self) -> list[int]:
        """Indices of the samples whose headers pass the checks (``scan`` first; every index when the folder is
        too big to scan)."""
        self.scan()
        return [index for index, (path, _) in enumerate(self.samples) if path not in self.skipped]

    def leave_out_bad(self) -> None:
        """Take the files found bad so far out of ``samples`` (``skip_counts`` still counts them).

        For passes that must see every image once (tokenizing, evaluation): there, standing in the next good
        file for a bad one would count that image twice.
        """
        self.left_out = self.left_out + [path for path, _ in self.samples if path in self.skipped]
        self.samples = [(path, label) for path, label in self.samples if path not in self.skipped]

    def record_bad(self, path: Path, reason: str) -> None:
        """Note ``path`` as bad here and in the shared record that the main process and other workers read."""
        self.skipped[path] = reason
        if self.positions is None:
            self.positions = {listed: position for position, listed in enumerate(self.listing)}
        position = self.positions.get(path)
        if position is not None and reason in BAD_IMAGE_REASONS:
            self.found_in_workers[position] = 1 + BAD_IMAGE_REASONS.index(reason)

    def gather_worker_findings(self) -> None:
        """Take the files DataLoader workers found bad into ``skipped`` (counted and named like this process's)."""
        for position in self.found_in_workers.nonzero().flatten().tolist():
            reason = BAD_IMAGE_REASONS[int(self.found_in_workers[position]) - 1]
            self.skipped.setdefault(self.listing[position], reason)

    def bad_files(self) -> list[tuple[Path, str]]:
        """(file, reason) of this dataset's bad files found so far, in folder order."""
        self.gather_worker_findings()
        mine = [path for path, _ in self.samples] + self.left_out
        return sorted((path, self.skipped[path]) for path in set(mine) if path in self.skipped)

    def skip_counts(self) -> dict[str, int]:
        """Bad files of this dataset found so far (by ``scan``, or when read here or in DataLoader workers), per
        reason."""
        self.gather_worker_findings()
        mine = {path for path, _ in self.samples} | set(self.left_out)
        counts: dict[str, int] = {}
        for path, reason in self.skipped.items():
            if path in mine:
                counts[reason] = counts.get(reason, 0) + 1
        return counts

    def _load(self, path: Path, index: int) -> torch.Tensor:
        """The file at ``path`` as sample ``index`` of this epoch; raises BadImageError."""
        image = read_training_image(path, self.transform.size, self.transform.channels)
        generator = None if self.seed is None else np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(image, generator)

    def read(self, index: int) -> tuple[torch.Tensor, int]:
        """Sample ``index`` exactly, for passes that must see every image once (tokenizing): no stand-in.

        Returns:
            (image (C, size, size) float32 in [-1, 1], class index).
        Raises:
            BadImageError: the file cannot be used, whatever ``bad_images`` says (it is recorded in ``skipped``;
                the caller leaves it out or stops).
        """
        path, label = self.samples[index]
        try:
            return self._load(path, index), label
        except BadImageError as err:
            self.record_bad(path, err.reason)
            raise

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Returns (image (C, size, size) float32 in [-1, 1], class index)."""
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            if path in self.skipped and self.bad_images == "skip":
                continue
            try:
                return self._load(path, index), label
            except BadImageError as err:
                if self.bad_images == "fail":
                    raise
                self.record_bad(path, err.reason)
                logger.warning("skipping image %s (%s: %s)", path, err.reason, err.detail)
        raise ValueError(f"no image under {self.root} can be used; every file is bad (see the warnings)")


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Turn images in [-1, 1] into PIL images (values are clamped, then rounded to 8 bits).

    Args:
        images: (B, C, H, W) or (C, H, W), C = 1 (grayscale "L") or 3 ("RGB").

    Returns:
        a list of B PIL images.
    """
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (B, 1|3, H, W) in [-1, 1], got {tuple(images.shape)}")
    pixels = images.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    arrays = pixels.permute(0, 2, 3, 1).numpy()  # (B, C, H, W) -> (B, H, W, C)
    if arrays.shape[-1] == 1:
        return [Image.fromarray(array[:, :, 0], mode="L") for array in arrays]
    return [Image.fromarray(array, mode="RGB") for array in arrays]


LABEL_FONT = ("DejaVuSans.ttf", 10)  # found by name in the system's font folders where installed


@functools.cache
def _label_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans where the system has it (accented Latin, Greek, Cyrillic: captions and class names are any
    language), else Pillow's bundled font, which draws only ASCII."""
    try:
        return ImageFont.truetype(*LABEL_FONT)
    except OSError:
        return ImageFont.load_default()


def make_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, labels: Sequence[str | int] | None = None
) -> Image.Image:
    """Tile images into one RGB picture, optionally with a text label under each image.

    Layout: ``ncol = min(nrow, B)`` columns and ``ceil(B / ncol)`` rows of cells separated and framed by
    ``padding`` black pixels. A cell is ``H x W`` without labels. With labels, a strip of the default font's
    line height plus 4 px is added below each image, and cells widen to the widest label plus 4 px if that
    exceeds W (images are centred). So without labels the grid is
    ``(ncol * W + (ncol + 1) * padding) x (nrows * H + (nrows + 1) * padding)`` (width x height).

    Args:
        images: (B, C, H, W) in [-1, 1], C = 1 or 3.
        nrow: images per row.
        padding: pixels between and around cells.
        labels: one label per image (drawn with PIL's default font), or None.

    Returns:
        the grid as a PIL RGB image.
    """
    if nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    tiles = [tile.convert("RGB") for tile in to_pil(images)]
    count = len(tiles)
    if not count:
        raise ValueError("make_grid got no images (a batch of 0); pass at least one")
    if labels is not None and len(labels) != count:
        raise ValueError(f"got {len(labels)} labels for {count} images; pass one label per image")
    height, width = tiles[0].height, tiles[0].width
    ncol = min(nrow, count)
    nrows = math.ceil(count / ncol)
    cell_width, label_height = width, 0
    font = _label_font()
    if labels is not None:
        texts = [str(label) for label in labels]
        top, bottom = font.getbbox("Ag")[1], font.getbbox("Ag")[3]
        label_height = (bottom - top) + 4
        widest = max(font.getbbox(text)[2] - font.getbbox(text)[0] for text in texts)
        cell_width = max(width, widest + 4)
    cell_height = height + label_height
    grid = Image.new("RGB", (ncol * cell_width + (ncol + 1) * padding, nrows * cell_height + (nrows + 1) * padding))
    draw = ImageDraw.Draw(grid)
    for index, tile in enumerate(tiles):
        row, col = divmod(index, ncol)
        left = padding + col * (cell_width + padding)
        top = padding + row * (cell_height + padding)
        grid.paste(tile, (left + (cell_width - width) // 2, top))
        if labels is not None:
            text = texts[index]
            text_width = font.getbbox(text)[2] - font.getbbox(text)[0]
            draw.text((left + (cell_width - text_width) // 2, top + height + 2), text, fill="white", font=font)
    return grid


LABEL_CHARACTERS = 24  # prompt labels under grid tiles are cut to this length so that cells stay narrow


def prompt_label(text: str) -> str:
    """A prompt as the label under its grid cell: one line, cut to ``LABEL_CHARACTERS`` ("a red apple on a ...")."""
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 3] + "..."


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    labels: Sequence[str | int] | None = None,
    padding: int = 2,
) -> Path:
    """Write ``make_grid(images, nrow, padding, labels)`` as a PNG (atomically) and return its path.

    Args:
        images: (B, C, H, W) in [-1, 1], C = 1 or 3.
        path: output file; parent folders are created.
        nrow: images per row.
        labels: optional text under each image.
        padding: pixels between and around cells.
    """
    path = Path(path)
    grid = make_grid(images, nrow=nrow, padding=padding, labels=labels)
    atomic_write(path, lambda tmp: grid.save(tmp, format="PNG"))
    return path
