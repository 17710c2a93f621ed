"""Sets of generated images on disk, written and read a batch at a time.

Two forms:
- a folder of images, as ``nextscale sample --out-dir`` writes them (``{index:04d}_class{label}.png``, or
  ``{index:04d}.png`` for prompts): read in name order, the label from the name when every name carries one;
- an ``.npz`` in the format of OpenAI's guided-diffusion evaluation suite, which the VAR paper reports its FID,
  IS, precision and recall with: ``arr_0`` uint8 (N, H, W, 3) RGB and, for class models, ``arr_1`` int64 (N,)
  labels (what guided-diffusion's ``image_sample.py`` writes).

Fifty thousand 256 px images are 9.8 GB as uint8, so neither direction holds the set in memory: the writer streams
each batch into the archive's ``arr_0.npy`` entry, and the reader parses that entry's header and reads it in
slices. Reading ``np.load(path)["arr_0"]`` gives the same array.
"""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nextscale.data.image_reading import upright
from nextscale.data.transforms import convert_mode

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LABELLED_NAME = re.compile(r"\d+_class(\d+)\.\w+")  # the names `sample --out-dir` and `evaluate --save-samples` give
IMAGES_ENTRY, LABELS_ENTRY = "arr_0.npy", "arr_1.npy"


class NpzImageWriter:
    """Streams ``count`` uint8 RGB images into an ``.npz`` (``arr_0``, plus ``arr_1`` labels when given).

    The archive is written next to ``path`` under a temporary name and renamed into place by ``close()`` once
    all ``count`` images are in, so an interrupted run never leaves a short archive that looks complete.
    Use as a context manager; leaving the block by an exception removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, count: int, side: int) -> None:
        if count < 1 or side < 1:
            raise ValueError(f"an image archive needs count >= 1 and side >= 1, got {count} and {side}")
        self.path = Path(path)
        self.shape = (count, side, side, 3)
        self.labels: list[int] = []
        self.labelled: bool | None = None  # decided by the first batch
        self.written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._entry = self._zip.open(IMAGES_ENTRY, "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(self._entry, {**header, "shape": self.shape})

    def add(self, images: torch.Tensor, labels: Sequence[int] | None = None) -> None:
        """Append images (B, 1|3, H, W) in [-1, 1] (rounded to 8 bits as PNGs are; gray becomes RGB), with their
        labels for a class model (give labels with every batch or with none)."""
        pixels = images.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
        self.add_pixels(pixels.permute(0, 2, 3, 1).numpy(), labels)  # (B, C, H, W) -> (B, H, W, C)

    def add_pixels(self, pixels: np.ndarray, labels: Sequence[int] | None = None) -> None:
        """Append uint8 images (B, H, W, 1|3)."""
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:3] != self.shape[1:3]:
            raise ValueError(f"expected uint8 images (B, {self.shape[1]}, {self.shape[2]}, 1|3), got {pixels.shape}")
        if pixels.shape[-1] == 1:
            pixels = np.repeat(pixels, 3, axis=-1)  # the evaluation suite reads RGB
        if self.written + len(pixels) > self.shape[0]:
            raise ValueError(f"the archive holds {self.shape[0]} images; {self.written + len(pixels)} were given")
        if self.labelled is None:
            self.labelled = labels is not None
        if self.labelled != (labels is not None):
            raise ValueError("give labels with every batch of a class model's images, or with none")
        if labels is not None:
            if len(labels) != len(pixels):
                raise ValueError(f"{len(pixels)} images but {len(labels)} labels")
            self.labels.extend(int(label) for label in labels)
        self._entry.write(np.ascontiguousarray(pixels).tobytes())
        self.written += len(pixels)

    def close(self) -> None:
        """Finish the archive and move it into place; refuses (and removes it) when images are missing."""
        if self.written != self.shape[0]:
            self.abort()
            raise ValueError(f"the archive was to hold {self.shape[0]} images, but {self.written} were written")
        try:
            self._entry.close()
            if self.labels:
                with self._zip.open(LABELS_ENTRY, "w") as entry:
                    np.lib.format.write_array(entry, np.asarray(self.labels, dtype=np.int64))
            self._zip.close()
            os.replace(self._tmp, self.path)
        except BaseException:  # a full disk, an interrupt: no temporary file is left behind
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the unfinished archive (safe after a failed write or a close that raised)."""
        try:
            if not self._entry.closed:
                self._entry.close()
            self._zip.close()
        except (OSError, ValueError):
            pass  # the file is removed below either way
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> NpzImageWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def sample_label(name: str) -> int | None:
    """The class label in a sample file's name (``0042_class7.png`` -> 7), or None."""
    found = LABELLED_NAME.fullmatch(name)
    return int(found.group(1)) if found else None


class SampleSet:
    """Generated images from a folder or an ``.npz``: ``batches(size)`` yields (images (b, 3, H, W) float32 in
    [-1, 1], labels (b,) int64, -1 where unknown); ``labels`` is None unless every image has one."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path} not found; give a folder of sample images (e.g. from `nextscale sample --out-dir`) "
                "or an .npz with arr_0 (N, H, W, 3) uint8"
            )
        if self.path.is_dir():
            files = [
                path
                for path in self.path.iterdir()
                if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")  # macOS ._0000.png forks
            ]
            self.files = sorted(files, key=_index_order)
            if not self.files:
                raise ValueError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)}); give the sample folder")
            labels = [sample_label(path.name) for path in self.files]
            self.labels = labels if None not in labels else None
            self.count, self.side = len(self.files), open_sample_image(self.files[0]).size[0]
        else:
            self.files = None
            self.count, self.side, self.labels = _npz_facts(self.path)

    def __len__(self) -> int:
        return self.count

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``limit`` images (default: all), ``batch_size`` at a time."""
        count = self.count if limit is None else min(limit, self.count)
        labels = torch.tensor(self.labels if self.labels is not None else [-1] * self.count, dtype=torch.long)
        pixel_batches = (
            self._folder_pixels(count, batch_size) if self.files else _npz_pixels(self.path, count, batch_size)
        )
        start = 0
        for pixels in pixel_batches:  # (b, H, W, 3) uint8
            images = (
                torch.tensor(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
            )  # a copy: archive bytes are read-only
            yield images, labels[start : start + len(images)]
            start += len(images)

    def _folder_pixels(self, count: int, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, count, batch_size):
            pictures = [
                open_sample_image(path, self.side) for path in self.files[start : min(start + batch_size, count)]
            ]
            yield np.stack([np.asarray(picture) for picture in pictures])


def _index_order(path: Path) -> tuple[int, str]:
    """Sort key: the number a name starts with, then the name (10000_class1.png comes after 9999_class3.png)."""
    digits = re.match(r"\d+", path.name)
    return (int(digits.group()) if digits else -1, path.name)


def open_sample_image(path: Path, side: int | None = None) -> Image.Image:
    """One sample image as RGB, read as training images are (``image_reading.upright``: the EXIF turn, a 16-bit gray
    PNG's transparent value as alpha; then ``convert_mode``); it must be square (and ``side`` px, the first image's
    size, when given)."""
    try:
        with Image.open(path) as image:
            image.load()
            picture = convert_mode(upright(image), 3)  # as references are read: 16-bit scaled, transparency on white
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"sample image {path} cannot be read ({err}); remove or replace it") from err
    width, height = picture.size
    if width != height or (side is not None and width != side):
        first = f" (the first is {side}x{side})" if side is not None else ""
        raise ValueError(f"sample image {path} is {width}x{height}; the samples must be square, all one size{first}")
    return picture


def _open_entry(archive: zipfile.ZipFile, name: str, path: Path):
    """An ``.npy`` entry's stream positioned at its data, and its shape (uint8 C-order arrays only)."""
    stream = archive.open(name)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream)
    if fortran:
        raise ValueError(f"{path}: {name} is stored in Fortran order; save it with np.savez (C order)")
    return stream, shape, dtype


@contextlib.contextmanager
def _damaged_archive_errors(path: Path) -> Iterator[None]:
    """Turn zipfile's and zlib's errors about a damaged member (a bad CRC-32, a broken local header, corrupt
    compressed data) into one ValueError naming the archive."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise ValueError(
            f"{path} is damaged ({err}); write the archive again (e.g. `nextscale sample --npz`) or copy it anew"
        ) from err


def _npz_facts(path: Path) -> tuple[int, int, list[int] | None]:
    """(count, side, labels or None) of an image archive, reading only headers and the labels."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path} is not an .npz archive ({err}); give a sample folder or an .npz") from err
    with archive, _damaged_archive_errors(path):
        if IMAGES_ENTRY not in archive.namelist():
            raise ValueError(f"{path} has no arr_0; the images must be arr_0, uint8 (N, H, W, 3)")
        stream, shape, dtype = _open_entry(archive, IMAGES_ENTRY, path)
        stream.close()
        if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3) or shape[1] != shape[2] or shape[0] < 1:
            raise ValueError(
                f"{path}: arr_0 is {dtype} {shape}; expected uint8 (N, H, W, 3) square RGB images (N, H, W, C order, "
                "as guided-diffusion's evaluation suite reads them)"
            )
        labels = None
        if LABELS_ENTRY in archive.namelist():
            with archive.open(LABELS_ENTRY) as entry:
                values = np.lib.format.read_array(entry, allow_pickle=False)
            if values.shape != (shape[0],) or not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"{path}: arr_1 should hold one integer label per image, got {values.dtype} {values.shape}"
                )
            labels = values.astype(np.int64).tolist()
    return shape[0], shape[1], labels


def _npz_pixels(path: Path, count: int, batch_size: int) -> Iterator[np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        with _damaged_archive_errors(path):
            stream, shape, _ = _open_entry(archive, IMAGES_ENTRY, path)
        with stream:
            per_image = int(np.prod(shape[1:]))
            for start in range(0, count, batch_size):
                number = min(batch_size, count - start)
                with _damaged_archive_errors(path):  # the CRC-32 is checked when the last bytes are read
                    data = stream.read(number * per_image)
                if len(data) != number * per_image:
                    complete = start + len(data) // per_image
                    raise ValueError(
                        f"{path} is truncated: arr_0 holds {complete} complete images, its header says {shape[0]}"
                    )
                pixels = np.frombuffer(data, dtype=np.uint8).reshape(number, *shape[1:])
                yield np.repeat(pixels, 3, axis=-1) if shape[-1] == 1 else pixels
