"""Image-caption datasets for text-to-image training: (image tensor in [-1, 1], caption str) pairs.

Three sources, one behaviour (``open_caption_dataset`` picks the right one for a path)::

    caption folder                 manifest                                   webdataset shards
    root/                          root/captions.jsonl (or .csv)              shards/shard-00000.tar
      cat.png   cat.txt              {"image": "images/0.png",                  0001.png  0001.txt
      sub/dog.jpg  sub/dog.txt        "caption": "a cat"}                       0002.jpg  0002.txt
                                     {"image": "images/1.png",                  ...
                                      "caption": ["a dog", "a puppy"]}

- **Folder**: every image under ``root`` (recursive; hidden files skipped) with a ``.txt`` file of the same
  stem next to it. Each non-blank line of the ``.txt`` is one caption. A folder holding ``train/`` and ``val/``
  (or ``validation/``, ``test/``) sub-folders is two datasets, training and held-out (``open_caption_splits``),
  whatever their format.
- **Manifest**: JSONL (one object per line) or CSV (header with ``image`` and ``caption`` columns, one caption
  per row; repeat the image on several rows for several captions). ``image`` is relative to the manifest's
  folder (or absolute); in JSONL ``caption`` may be a string or a list of strings. An image listed on several
  lines or rows is one sample with all their captions.
- **Shards**: uncompressed webdataset ``.tar`` files, read with Python's ``tarfile``, so the ``data`` extra
  (webdataset) is not needed. A member's key is its path up to the first dot of the file name
  (``a/0001.png`` and ``a/0001.txt`` share key ``a/0001``), as in webdataset. The shards are indexed once at
  construction (member offsets; captions are read then), so the dataset is map-style and works with
  ``ResumableDistributedSampler`` like every other dataset here; each access reads one member by offset.
  Compressed shards (``.tar.gz``) are refused with a message: random access would re-read the stream.

All text is UTF-8 (a byte-order mark is dropped). Bad samples are skipped and counted: a missing or empty
caption, a caption file or manifest line that is not UTF-8, a manifest line that is not a record, a shard
member whose name has a dot before its extension (its webdataset key would end at that dot), an image file
that does not exist, or whose header Pillow cannot read, or that is tiny or huge by the image folders' rules
(``nextscale.data.images``; ``check_images``, on by default, opens every image header at construction). One
``logging`` warning summarises the counts with examples; ``dataset.skipped`` holds them and
``dataset.bad_files`` names the bad images. With ``bad_images="fail"`` a bad image stops construction instead,
named. An image that passes the header check but fails to decode (a truncated file) is found at access time:
the next readable sample is returned in its place and ``skipped["corrupt_image"]`` grows (in that process;
DataLoader workers keep their own counts); ``read`` (for passes that must see every sample once) raises
instead.

When an image has several captions one is drawn per access from ``numpy.random.default_rng([seed, epoch,
index])``, the same generator that then draws the crop, so sample ``index`` of epoch ``e`` is identical on
every worker, machine and resume (the training loop calls ``set_epoch``).

The default ``mid_reso`` is 1.0 (no crop margin) and flips are off: captions may name positions ("in the
top left") that a crop margin shifts and a flip contradicts.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from nextscale.data.folders import HELD_OUT_NAMES
from nextscale.data.images import BAD_IMAGE_POLICIES, IMAGE_EXTENSIONS, BadImageError, check_image_header
from nextscale.data.transforms import ImageTransform

logger = logging.getLogger(__name__)

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
)
# The reasons that are about an image file (``bad_images="fail"`` stops on these), by the image check's reason.
IMAGE_PROBLEMS = {"unreadable": "corrupt_image", "tiny": "tiny_image", "huge": "huge_image"}
SHOWN_EXAMPLES = 3
MANIFEST_NAMES = ("captions.jsonl", "captions.csv")
CAPTION_SUFFIX = ".txt"

# Pillow signals unreadable files with OSError (incl. UnidentifiedImageError), ValueError or SyntaxError.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7": "xz"}


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
    return tuple(text.strip() for text in captions if text.strip())


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
        mid_reso: shorter side resized to ``round(mid_reso * size)`` before the crop (1.0 = no margin).
        hflip: random horizontal flips; off by default because captions may say "left" or "right".
        channels: 3 (RGB) or 1 (grayscale).
        seed: caption choice and crop of sample ``index`` in epoch ``e`` come from ``default_rng([seed, e,
            index])``.
        check_images: open every image header at construction, so unreadable, tiny or huge files are skipped
            and counted up front (a few seconds per 100k local files; shards are read once).
        bad_images: "skip" (count and name bad images) or "fail" (raise ValueError naming them).
    """

    def __init__(
        self,
        size: int,
        train: bool = True,
        mid_reso: float = 1.0,
        hflip: bool = False,
        channels: int = 3,
        seed: int = 0,
        check_images: bool = True,
        bad_images: str = "skip",
    ) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        self.transform = ImageTransform(size, train=train, mid_reso=mid_reso, hflip=hflip, channels=channels)
        self.bad_images = bad_images
        self.origin = ""  # where the samples come from, for logs (set by each source)
        self.seed = seed
        self.epoch = 0
        self.check_images = check_images
        self.samples: list[CaptionedImage] = []
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.bad_files: list[tuple[str, str]] = []  # (image, reason) of the images left out, in order found
        self._reported_corrupt: set[str] = set()

    def _accept(self, candidates: Iterable[_Candidate], where: str | os.PathLike) -> None:
        """Keep the good candidates, count the rest, and log one summary line."""
        self.origin = str(where)
        examples: dict[str, str] = {}
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
            examples.setdefault(problem, candidate.name)
            if problem in IMAGE_PROBLEMS.values():
                self.bad_files.append((candidate.name, problem.removesuffix("_image")))
        if self.bad_files and self.bad_images == "fail":
            raise ValueError(
                f"{len(self.bad_files)} images of {where} cannot be used: {self.named_bad_files()}; fix or delete "
                "them, or pass --bad-images skip to go on without them"
            )
        total_skipped = sum(self.skipped.values())
        summary = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in self.skipped.items() if count)
        if not self.samples:
            raise ValueError(
                f"{where} holds no usable image-caption pairs ({summary or 'nothing found'}); see the "
                "nextscale.data.captions docstring for the expected layout"
            )
        if total_skipped:
            example = "; ".join(f"{reason.replace('_', ' ')}: {name}" for reason, name in examples.items())
            logger.warning(
                "%s: skipped %d of %d samples (%s), e.g. %s",
                where,
                total_skipped,
                total_skipped + len(self.samples),
                summary,
                example,
            )

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
                check_image_header(source, self.transform.size)
            else:
                check_image_header(candidate.name, self.transform.size, stream=_image_stream(source))
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
            with Image.open(_image_stream(sample.source)) as image:
                image.load()  # decode now: a truncated file fails here, not later in the transform
                return image.copy()
        except _READ_ERRORS as err:
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
        return self.transform(image, np.random.default_rng([self.seed, self.epoch, index])), sample.captions

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
            generator = np.random.default_rng([self.seed, self.epoch, index])
            caption = sample.captions[int(generator.integers(len(sample.captions)))]
            return self.transform(image, generator), caption
        raise ValueError("no image of this dataset could be decoded; every file is corrupt")


class CaptionFolderDataset(CaptionDataset):
    """Images under ``root`` (recursive) with same-stem ``.txt`` captions, one caption per line.

    Args:
        root: the folder. Other arguments: see ``CaptionDataset``.

    Example:
        >>> dataset = CaptionFolderDataset("photos/", size=256)
        >>> image, caption = dataset[0]  # (3, 256, 256) in [-1, 1], "a cat on a sofa"
    """

    def __init__(self, root: str | os.PathLike, size: int, **options: Any) -> None:
        super().__init__(size, **options)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"caption folder {self.root} does not exist (expected root/name.png + name.txt)")
        visible = sorted(
            path
            for path in self.root.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(self.root).parts)
        )
        images = [path for path in visible if path.suffix.lower() in IMAGE_EXTENSIONS]
        stems = {path.with_suffix("") for path in images}
        # A caption whose image is missing is counted too: a renamed or deleted image should not vanish unseen.
        orphans = [path for path in visible if path.suffix == CAPTION_SUFFIX and path.with_suffix("") not in stems]
        candidates = [self._candidate(path) for path in images]
        candidates += [_Candidate(str(path), problem="missing_image") for path in orphans]
        self._accept(candidates, self.root)

    @staticmethod
    def _candidate(path: Path) -> _Candidate:
        caption_path = path.with_suffix(CAPTION_SUFFIX)
        if not caption_path.is_file():
            return _Candidate(str(path), problem="missing_caption")
        try:
            text = caption_path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not caption text
        except UnicodeDecodeError:
            return _Candidate(str(caption_path), problem="caption_not_utf8")
        return _Candidate(str(path), _clean(text.splitlines()), path)


class CaptionManifestDataset(CaptionDataset):
    """Images listed in a JSONL or CSV manifest of ``{"image": path, "caption": text or [texts]}``.

    Args:
        manifest: a ``.jsonl`` or ``.csv`` file; image paths are relative to its folder. Other arguments: see
            ``CaptionDataset``.

    Example:
        >>> dataset = CaptionManifestDataset("scenes-train/captions.jsonl", size=64, channels=1)
        >>> image, caption = dataset[0]  # (1, 64, 64), "a sneaker in the top left and a bag in the bottom right"
    """

    def __init__(self, manifest: str | os.PathLike, size: int, **options: Any) -> None:
        super().__init__(size, **options)
        self.manifest = Path(manifest)
        if not self.manifest.is_file():
            raise FileNotFoundError(f"caption manifest {self.manifest} does not exist")
        suffix = self.manifest.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(f"caption manifest {self.manifest} must end with .jsonl or .csv")
        records = self._jsonl_records() if suffix == ".jsonl" else self._csv_records()
        self._accept(_merge_repeated_images(records), self.manifest)

    def _jsonl_records(self) -> Iterable[_Candidate]:
        with open(self.manifest, "rb") as handle:  # decoded line by line: one bad line is one skipped record
            for number, raw in enumerate(handle, start=1):
                where = f"{self.manifest}:{number}"
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    yield _Candidate(where, problem="caption_not_utf8")
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    yield _Candidate(where, problem="bad_record")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("image"), str):
                    yield _Candidate(where, problem="bad_record")
                    continue
                yield self._candidate(record["image"], record.get("caption"))

    def _csv_records(self) -> Iterable[_Candidate]:
        # Bytes that are not UTF-8 become lone surrogates, so one bad row is one skipped record.
        with open(self.manifest, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
                raise ValueError(
                    f"{self.manifest} needs a header row with 'image' and 'caption' columns, found {reader.fieldnames}"
                )
            for number, row in enumerate(reader, start=2):
                where = f"{self.manifest}:{number}"
                if any(_has_surrogates(value) for value in row.values() if isinstance(value, str)):
                    yield _Candidate(where, problem="caption_not_utf8")
                elif not row["image"]:
                    yield _Candidate(where, problem="bad_record")
                else:
                    yield self._candidate(row["image"], row["caption"])

    def _candidate(self, image: str, caption: object) -> _Candidate:
        path = self.manifest.parent / image  # an absolute ``image`` replaces the parent
        if not path.is_file():
            return _Candidate(str(path), problem="missing_image")
        if caption is None:
            return _Candidate(str(path), problem="missing_caption")
        captions = [caption] if isinstance(caption, str) else caption
        if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
            return _Candidate(str(path), problem="bad_record")
        return _Candidate(str(path), _clean(captions), path)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _merge_repeated_images(candidates: Iterable[_Candidate]) -> list[_Candidate]:
    """One candidate per image, with the captions of every line that lists it (in order); problems stay apart."""
    merged: dict[str, _Candidate] = {}
    problems = []
    for candidate in candidates:
        if candidate.problem is not None:
            problems.append(candidate)
        elif candidate.name in merged:
            first = merged[candidate.name]
            captions = first.captions + tuple(text for text in candidate.captions if text not in first.captions)
            merged[candidate.name] = _Candidate(first.name, captions, first.source)
        else:
            merged[candidate.name] = candidate
    return [*merged.values(), *problems]


class CaptionShardDataset(CaptionDataset):
    """Webdataset-style uncompressed ``.tar`` shards: ``KEY.png|jpg|jpeg|webp`` + ``KEY.txt`` per sample.

    Args:
        shards: a ``.tar`` file, a folder of them (``*.tar``, sorted), or a list of files. Other arguments:
            see ``CaptionDataset``.

    Example:
        >>> dataset = CaptionShardDataset("shards/", size=256)
        >>> image, caption = dataset[0]
    """

    def __init__(self, shards: str | os.PathLike | Sequence[str | os.PathLike], size: int, **options: Any) -> None:
        super().__init__(size, **options)
        self.shards = self._shard_files(shards)
        candidates = [candidate for shard in self.shards for candidate in self._index_shard(shard)]
        self._accept(candidates, self.shards[0].parent if len(self.shards) > 1 else self.shards[0])

    @staticmethod
    def _shard_files(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
        if isinstance(shards, (str, os.PathLike)):
            path = Path(shards)
            if path.is_dir():
                files = sorted(path.glob("*.tar"))
                if not files:
                    raise ValueError(f"shard folder {path} holds no .tar files")
                return files
            files = [path]
        else:
            files = [Path(shard) for shard in shards]
        if not files:
            raise ValueError("no shard files given")
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"shard {file} does not exist")
        return files

    @staticmethod
    def _index_shard(shard: Path) -> list[_Candidate]:
        with open(shard, "rb") as handle:
            kind = _COMPRESSED_MAGIC.get(handle.read(2))
        if kind is not None:
            raise ValueError(
                f"shard {shard} is {kind}-compressed; random access needs plain .tar shards "
                f"(decompress it, e.g. `{'gunzip' if kind == 'gzip' else kind + ' -d'}`)"
            )
        images: dict[str, TarMember] = {}
        captions: dict[str, str | None] = {}
        dotted: dict[str, str] = {}  # key -> a member name with a dot before its extension
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:  # reads headers only, seeking past the data
                    if not member.isfile():
                        continue
                    folder, _, file_name = member.name.rpartition("/")
                    stem, dot, extension = file_name.partition(".")
                    if not dot or stem == "":
                        continue
                    key = f"{folder}/{stem}" if folder else stem
                    extension = extension.lower()
                    last = "." + extension.rpartition(".")[2]
                    if "." in extension and (last in IMAGE_EXTENSIONS or last == CAPTION_SUFFIX):
                        dotted.setdefault(key, member.name)  # "a.1.png": key "a", extension "1.png"
                    elif "." + extension in IMAGE_EXTENSIONS:
                        images.setdefault(key, TarMember(shard, member.offset_data, member.size))
                    elif extension == "txt":
                        raw = tar.extractfile(member).read()
                        try:
                            captions[key] = raw.decode("utf-8-sig")
                        except UnicodeDecodeError:
                            captions[key] = None
                    # other members (.json, .cls, ...) belong to other tasks
        except tarfile.TarError as err:
            raise ValueError(f"cannot read shard {shard}: {err}; the file is truncated or not a tar") from err
        candidates = []
        for key in dict.fromkeys([*images, *captions]):  # first appearance order, no duplicates
            name = f"{shard}:{key}"
            if key not in images:
                candidates.append(_Candidate(name, problem="missing_image"))
            elif key not in captions:
                candidates.append(_Candidate(name, problem="missing_caption"))
            elif captions[key] is None:
                candidates.append(_Candidate(name + ".txt", problem="caption_not_utf8"))
            else:
                candidates.append(_Candidate(name, _clean(captions[key].splitlines()), images[key]))
        # Multi-part extensions ("x.seg.png") are a webdataset sample's other parts; they are counted only where
        # the sample has no image or no caption of its own, i.e. where a dotted file name would otherwise vanish.
        unpaired = [name for key, name in dotted.items() if not (key in images and key in captions)]
        return candidates + [_Candidate(f"{shard}:{name}", problem="dotted_name") for name in unpaired]


def open_caption_dataset(path: str | os.PathLike, size: int, **options: Any) -> CaptionDataset:
    """Pick the caption source for ``path``.

    A ``.jsonl``/``.csv`` file is a manifest and a ``.tar`` file a shard; a folder holding
    ``captions.jsonl`` or ``captions.csv`` is read through that manifest, a folder of ``.tar`` files as
    shards, and any other folder as images with ``.txt`` captions. ``options`` go to ``CaptionDataset``.
    """
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".csv"):
            return CaptionManifestDataset(path, size, **options)
        if suffix == ".tar":
            return CaptionShardDataset(path, size, **options)
        raise ValueError(f"{path} is neither a caption manifest (.jsonl, .csv) nor a shard (.tar)")
    if not path.is_dir():
        raise FileNotFoundError(f"caption data {path} does not exist")
    for name in MANIFEST_NAMES:
        if (path / name).is_file():
            return CaptionManifestDataset(path / name, size, **options)
    if any(path.glob("*.tar")):
        return CaptionShardDataset(path, size, **options)
    return CaptionFolderDataset(path, size, **options)


def open_caption_splits(
    path: str | os.PathLike, size: int, split: str | None = None, **options: Any
) -> tuple[CaptionDataset, CaptionDataset | None]:
    """(training, held-out) caption datasets of ``path``; the held-out one uses center crops.

    A folder with a ``train/`` sub-folder and a ``val/`` (or ``validation/``, ``test/``) one holds both splits,
    each in any format ``open_caption_dataset`` reads; any other path is training data alone (held-out None).

    Args:
        path: the caption data.
        size: output side in pixels.
        split: None for both; "train" or "val"/"test" for that split alone, as the first element.
        options: passed on to ``CaptionDataset`` (``seed``, ``channels``, ``bad_images``, ...).
    """
    root = Path(path)
    train_dir = root / "train"
    held_out_dir = next((root / name for name in HELD_OUT_NAMES if (root / name).is_dir()), None)
    if split is not None and split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if not train_dir.is_dir():
        if split in ("val", "test"):
            raise ValueError(
                f"caption data {root} has no held-out split (a train/ and a val/ sub-folder); tokenize the "
                "held-out captions as their own set, e.g. --data captions:DIR/val"
            )
        return open_caption_dataset(root, size, **options), None
    if split in ("val", "test"):
        if held_out_dir is None:
            raise ValueError(f"{root} has train/ but no val/ (or validation/, test/) sub-folder to read")
        return open_caption_dataset(held_out_dir, size, **{**options, "train": False}), None
    train = open_caption_dataset(train_dir, size, **options)
    if split is not None or held_out_dir is None:
        return train, None
    return train, open_caption_dataset(held_out_dir, size, **{**options, "train": False})
