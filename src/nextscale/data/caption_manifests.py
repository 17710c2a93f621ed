"""``CaptionManifestDataset``: images listed in a JSONL or CSV manifest, with the record parsing it needs."""

from __future__ import annotations

import csv
import difflib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import (
    MANIFEST_NAMES,
    REASON_FIXES,
    SHOWN_EXAMPLES,
    CaptionDataset,
    CaptionedImage,
    _Candidate,
    _clean,
    logger,
)
from nextscale.data.image_listing import IMAGE_EXTENSIONS, visible_files

# One manifest line: where it is ("captions.jsonl:4", for messages) and what it says.
_Line = tuple[str, _Candidate]
# The keys (JSONL) or columns (CSV) of a record's image and caption, preferred first: ours, then Hugging Face's.
IMAGE_KEYS = ("image", "file_name")
CAPTION_KEYS = ("caption", "text")


class CaptionManifestDataset(CaptionDataset):
    """Images listed in a JSONL or CSV manifest of ``{"image": path, "caption": text or [texts]}``, or of Hugging Face
    imagefolder's ``{"file_name": path, "text": text}`` (``metadata.jsonl``/``.csv``).

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
        self._working_folder = os.getcwd()  # what the relative paths of ``samples`` are relative to
        self._prefixes: tuple[str, ...] | None = None  # ``_folder_prefixes``, looked up once
        if not self.manifest.is_file():
            raise FileNotFoundError(f"caption manifest {self.manifest} does not exist")
        suffix = self.manifest.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(f"caption manifest {self.manifest} must end with .jsonl or .csv")
        records = self._jsonl_records() if suffix == ".jsonl" else self._csv_records()
        candidates, self.uncaptioned_lines, self.undecodable_lines = _merge_repeated_images(records)
        if self.bad_images == "fail":
            self._refuse_lost_captions()
        self._accept([*candidates, *self._unlisted_images(candidates)], self.manifest)
        # Neither is a skipped sample (each such image trains on its other lines' captions), but a caption is lost.
        if self.undecodable_lines:
            one = len(self.undecodable_lines) == 1
            logger.warning(
                "%s: %s not UTF-8, so %s left out (%s the captions of %s other lines); %s",
                self.manifest,
                _lines(self.undecodable_lines),
                "its caption is" if one else "their captions are",
                "its image keeps" if one else "their images keep",
                "its" if one else "their",
                REASON_FIXES["caption_not_utf8"],
            )
        if self.uncaptioned_lines:
            logger.warning(
                "%s: %s an image without a caption; each such image trains with the captions of its other lines",
                self.manifest,
                _lines(self.uncaptioned_lines, verb=("lists", "list")),
            )

    def _refuse_lost_captions(self) -> None:
        """Under ``bad_images="fail"``, stop at a line whose caption is lost though its image trains on other lines'
        captions (no sample is skipped, but a careful run means every line): one not UTF-8, or one with no caption
        (no ``caption`` key, an empty CSV cell, or only blank text)."""
        if self.undecodable_lines:
            their = "its caption" if len(self.undecodable_lines) == 1 else "their captions"
            raise ValueError(
                f"{self.manifest}: {_lines(self.undecodable_lines)} not UTF-8; {REASON_FIXES['caption_not_utf8']}, "
                f"or pass --bad-images skip to go on without {their}"
            )
        if self.uncaptioned_lines:
            one = len(self.uncaptioned_lines) == 1
            raise ValueError(
                f"{self.manifest}: {_lines(self.uncaptioned_lines, verb=('lists', 'list'))} an image without a caption "
                f"(other lines caption it); write the caption on {'that line' if one else 'those lines'} or delete "
                f"{'it' if one else 'them'}, or pass --bad-images skip to go on (the image trains on its other lines)"
            )

    def _unlisted_images(self, candidates: list[_Candidate]) -> list[_Candidate]:
        """An ``unlisted_image`` candidate for each image file under the manifest's folder that no line names, as a
        caption folder counts an image without its ``.txt``: a forgotten row should not drop images unseen. A
        sub-folder holding a manifest of its own (``val/captions.jsonl``, ``val/metadata.jsonl``) is another data set,
        not looked into."""
        working_folder = os.getcwd()

        def file_key(path: str | os.PathLike) -> str:  # as ``_merge_repeated_images`` spells an image
            return os.path.normcase(os.path.normpath(os.path.join(working_folder, path)))

        listed = {file_key(candidate.source) for candidate in candidates if isinstance(candidate.source, Path)}
        as_written, real = self._folder_prefixes  # lines may name the images through the folder's real path
        root = self.manifest.parent
        files = visible_files(root)
        others = {path.parent for path in files if path.name in MANIFEST_NAMES and path.parent != root}
        unlisted = []
        for path in files:
            if path.suffix.lower() not in IMAGE_EXTENSIONS or any(folder in path.parents for folder in others):
                continue
            absolute = self._absolute(path)
            if file_key(absolute) in listed or file_key(real + absolute[len(as_written) :]) in listed:
                continue
            unlisted.append(_Candidate(str(path), problem="unlisted_image"))
        return unlisted

    def split_key(self, sample: CaptionedImage) -> str:
        """The image's path relative to the manifest's folder, normalised, with ``/`` and without its extension:
        ``a.png``, ``./a.png``, ``x/../a.png`` and ``/data/a.png`` (from ``/data/captions.jsonl``) are all ``a``,
        whether the manifest is named by an absolute or a relative path, or through a linked folder when its lines
        give the real one. So it is the same wherever the manifest and its images lie, and the key a caption folder
        or shards of the same images give it (same split). An image outside that folder is ``../images/a``; one on
        another drive (Windows) keeps its absolute path."""
        # String operations, not pathlib: once per sample (6 us a key on a shared 2-core CPU, 5x less than Path)
        folders, image = self._folder_prefixes, self._absolute(sample.name)
        inside = next((image[len(folder) :] for folder in folders if image.startswith(folder)), None)
        if inside is None:
            try:
                inside = os.path.relpath(image, folders[0])
            except ValueError:  # another drive
                inside = image
        return os.path.splitext(inside)[0].replace(os.sep, "/")

    def _absolute(self, path: str | os.PathLike) -> str:
        """``path`` made absolute and normalised as text, from the working folder the manifest was read in (no
        symbolic link resolved: that costs a look-up per folder of every path)."""
        return os.path.normpath(os.path.join(self._working_folder, path))

    @property
    def _folder_prefixes(self) -> tuple[str, ...]:
        """The manifest's folder as written, then with its links resolved, each absolute and ending in a separator,
        looked up once: lines may give the real paths of its images."""
        if self._prefixes is None:
            folder = self._absolute(self.manifest.parent)
            self._prefixes = tuple(path.rstrip(os.sep) + os.sep for path in (folder, os.path.realpath(folder)))
        return self._prefixes

    def _jsonl_records(self) -> Iterable[_Line]:
        keys_seen = False  # whether a record so far had an image key: after one, a record without is one bad record
        with open(self.manifest, "rb") as handle:  # decoded line by line: one bad line is one bad record
            for number, raw in enumerate(handle, start=1):
                where = f"{self.manifest}:{number}"
                # Bytes that are not UTF-8 become lone surrogates: the line's image can still be read (``_decoded``).
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="surrogateescape")
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    yield where, _Candidate(where, problem="bad_record")
                    continue
                has_image_key = isinstance(record, dict) and any(key in record for key in IMAGE_KEYS)
                keys_seen |= has_image_key
                if isinstance(record, dict) and not has_image_key and not keys_seen:
                    # The first records name their keys another way, so every line likely does: one line naming
                    # them, not N bad records.
                    raise ValueError(
                        f"{where}: a record needs an image key, {_either(IMAGE_KEYS)}, and a caption key, "
                        f"{_either(CAPTION_KEYS)}; found {', '.join(map(repr, record)) or 'no keys'}"
                    )
                image = _first_present(record, IMAGE_KEYS) if isinstance(record, dict) else None
                if not isinstance(image, str):
                    yield where, _Candidate(where, problem="bad_record")
                    continue
                yield where, self._decoded(where, image, _first_present(record, CAPTION_KEYS))

    def _csv_records(self) -> Iterable[_Line]:
        # Bytes that are not UTF-8 become lone surrogates, so one bad row is one bad record (``_decoded``).
        with open(self.manifest, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            # "Image, Caption" (a spreadsheet's capitals, a space after each comma) means image,caption too.
            reader = csv.DictReader(handle, skipinitialspace=True)
            if reader.fieldnames is not None:
                reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
            names = reader.fieldnames or []
            image_column = next((name for name in IMAGE_KEYS if name in names), None)
            caption_column = next((name for name in CAPTION_KEYS if name in names), None)
            if image_column is None or caption_column is None:
                raise ValueError(
                    f"{self.manifest} needs a header row with 'image' and 'caption' columns (or Hugging Face's "
                    f"'file_name' and 'text'), found {reader.fieldnames}; {_header_fix(reader.fieldnames)}"
                )
            for number, row in enumerate(reader, start=2):
                where = f"{self.manifest}:{number}"
                if not row[image_column]:
                    yield where, _Candidate(where, problem="bad_record")
                else:  # other columns: not ours
                    yield where, self._decoded(where, row[image_column], row[caption_column])

    def _decoded(self, where: str, image: str, caption: object) -> _Candidate:
        """The candidate of line ``where``; a line whose image or caption holds bytes that are not UTF-8 (lone
        surrogates) is a ``caption_not_utf8`` one named ``where``, tied to its image when that can be read, so that
        an image that other lines caption is not lost (``_merge_repeated_images``)."""
        if _has_surrogates(image):
            return _Candidate(where, problem="caption_not_utf8")
        texts = caption if isinstance(caption, list) else [caption]
        if not any(isinstance(text, str) and _has_surrogates(text) for text in texts):
            return self._candidate(image, caption)
        path = self.manifest.parent / image
        if not path.is_file():
            return _Candidate(str(path), problem="missing_image")
        return _Candidate(where, source=path, problem="caption_not_utf8")

    def _candidate(self, image: str, caption: object) -> _Candidate:
        path = self.manifest.parent / image  # an absolute ``image`` replaces the parent
        if not path.is_file():
            return _Candidate(str(path), problem="missing_image")
        if caption is None:  # the source lets another line of the same image supply its captions
            return _Candidate(str(path), source=path, problem="missing_caption")
        captions = [caption] if isinstance(caption, str) else caption
        if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
            return _Candidate(str(path), problem="bad_record")
        return _Candidate(str(path), _clean(captions), path)


def _header_fix(fieldnames: list[str] | None) -> str:
    """How to repair a CSV header without ``image`` and ``caption``: the separator Excel uses in many locales, or
    the misspelt column names (``captoin`` -> ``caption``)."""
    names = fieldnames or []
    separator = next((mark for mark in (";", "\t", "|") if len(names) == 1 and mark in names[0]), None)
    if separator is not None:
        return f"the file is separated by {separator!r}; save it with commas (CSV UTF-8 in Excel)"
    renames = []
    for wanted in ("image", "caption"):
        close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
        if wanted not in names and close:
            renames.append(f"{close[0]!r} to {wanted!r}")
    if renames:
        return f"rename {' and '.join(renames)} in the first row"
    return "make its first row `image,caption` (other columns are ignored)"


def _either(keys: tuple[str, ...]) -> str:
    """ "'image' or 'file_name'" for ``IMAGE_KEYS``."""
    return " or ".join(map(repr, keys))


def _first_present(record: dict, keys: tuple[str, ...]) -> object:
    """The value of the first of ``keys`` that ``record`` holds (``image`` before ``file_name``), or None."""
    return next((record[key] for key in keys if key in record), None)


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _lines(wheres: list[str], verb: tuple[str, str] = ("is", "are")) -> str:
    """ "line captions.csv:4 is", "3 lines (captions.csv:4, captions.csv:9, ...) are" for ``wheres``
    (``DIR/captions.csv:4``, ...: the messages start with the manifest's path); the first ``SHOWN_EXAMPLES`` named."""
    numbers = [os.path.basename(where) for where in wheres]
    if len(numbers) == 1:
        return f"line {numbers[0]} {verb[0]}"
    shown = ", ".join(numbers[:SHOWN_EXAMPLES]) + (", ..." if len(numbers) > SHOWN_EXAMPLES else "")
    return f"{len(numbers)} lines ({shown}) {verb[1]}"


def _merge_repeated_images(lines: Iterable[_Line]) -> tuple[list[_Candidate], list[str], list[str]]:
    """(one candidate per image file, with the captions of every line that lists it (in order); the lines that list
    an image without a caption while other lines caption it; the lines of such images that are not UTF-8).

    An image is one file however its path is spelled: ``a.png``, ``./a.png``, ``x/../a.png`` and ``/data/a.png``
    (from ``/data/captions.jsonl``) are merged. Paths are normalised as text (as ``os.path.abspath`` does), not resolved
    through symbolic links: resolving checks every folder of every path (0.1 ms a line on a 2-core machine, minutes
    for a manifest of millions of images).

    A captionless or undecodable line of an image that other lines caption is no skipped sample (the image
    trains), so it is returned apart, to be named; an image that no line captions is one skipped sample, however
    many lines list it (counted as not UTF-8 when one of them is). Lines without a usable image stay apart.
    """
    merged: dict[str, _Candidate] = {}
    captionless: dict[str, list[_Line]] = {}
    problems = []
    working_folder = os.getcwd()  # once: os.path.abspath asks for it at every line (2-3x the time of the rest)
    for where, candidate in lines:
        if candidate.source is None:  # not a record, not UTF-8, or no such image file
            problems.append(candidate)
            continue
        # abspath without its getcwd; normcase: Windows names ignore case
        file = os.path.normcase(os.path.normpath(os.path.join(working_folder, candidate.source)))
        if candidate.problem is not None or not candidate.captions:  # no caption key, or only blank captions
            captionless.setdefault(file, []).append((where, candidate))
        elif file in merged:
            first = merged[file]
            captions = first.captions + tuple(text for text in candidate.captions if text not in first.captions)
            merged[file] = _Candidate(first.name, captions, first.source)
        else:
            merged[file] = candidate
    kept = [
        (where, candidate.problem)
        for file, found in captionless.items()
        if file in merged
        for where, candidate in found
    ]
    uncaptioned = [where for where, problem in kept if problem != "caption_not_utf8"]
    undecodable = [where for where, problem in kept if problem == "caption_not_utf8"]
    for file, found in captionless.items():
        if file not in merged:  # the image is lost: say why, an undecodable line first (its fix keeps the image)
            problems.append(next((c for _, c in found if c.problem == "caption_not_utf8"), found[0][1]))
    return [*merged.values(), *problems], uncaptioned, undecodable
