"""``CaptionManifestDataset``: images listed in a JSONL or CSV manifest, with the record parsing it needs."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import SHOWN_EXAMPLES, CaptionDataset, CaptionedImage, _Candidate, _clean, logger

# One manifest line: where it is ("captions.jsonl:4", for messages) and what it says.
_Line = tuple[str, _Candidate]


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
        self._working_folder = os.getcwd()  # what the relative paths of ``samples`` are relative to
        self._prefixes: tuple[str, ...] | None = None  # ``_folder_prefixes``, looked up once
        if not self.manifest.is_file():
            raise FileNotFoundError(f"caption manifest {self.manifest} does not exist")
        suffix = self.manifest.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            raise ValueError(f"caption manifest {self.manifest} must end with .jsonl or .csv")
        records = self._jsonl_records() if suffix == ".jsonl" else self._csv_records()
        candidates, self.uncaptioned_lines = _merge_repeated_images(records)
        self._accept(candidates, self.manifest)
        if self.uncaptioned_lines:  # not a skipped sample: the image trains, but the user may have lost a caption
            shown = ", ".join(self.uncaptioned_lines[:SHOWN_EXAMPLES])
            more = len(self.uncaptioned_lines) - SHOWN_EXAMPLES
            logger.warning(
                "%s: %d line(s) list an image without a caption; each such image trains with the captions of its "
                "other lines: %s%s",
                self.manifest,
                len(self.uncaptioned_lines),
                shown,
                f" and {more} more" if more > 0 else "",
            )

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
        with open(self.manifest, "rb") as handle:  # decoded line by line: one bad line is one skipped record
            for number, raw in enumerate(handle, start=1):
                where = f"{self.manifest}:{number}"
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    yield where, _Candidate(where, problem="caption_not_utf8")
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    yield where, _Candidate(where, problem="bad_record")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("image"), str):
                    yield where, _Candidate(where, problem="bad_record")
                    continue
                yield where, self._candidate(record["image"], record.get("caption"))

    def _csv_records(self) -> Iterable[_Line]:
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
                    yield where, _Candidate(where, problem="caption_not_utf8")
                elif not row["image"]:
                    yield where, _Candidate(where, problem="bad_record")
                else:
                    yield where, self._candidate(row["image"], row["caption"])

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


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _merge_repeated_images(lines: Iterable[_Line]) -> tuple[list[_Candidate], list[str]]:
    """(one candidate per image file, with the captions of every line that lists it (in order); the lines that list
    an image without a caption while other lines caption it).

    An image is one file however its path is spelled: ``a.png``, ``./a.png``, ``x/../a.png`` and ``/data/a.png``
    (from ``/data/captions.jsonl``) are merged. Paths are normalised as text (as ``os.path.abspath`` does), not resolved
    through symbolic links: resolving checks every folder of every path (0.1 ms a line on a 2-core machine, minutes
    for a manifest of millions of images).

    A captionless line of an image that other lines caption is no skipped sample (the image trains), so it is
    returned apart, to be named; an image that no line captions is one skipped sample, however many lines list it.
    Lines without a usable image stay apart.
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
    uncaptioned = [where for file, found in captionless.items() if file in merged for where, _ in found]
    problems += [found[0][1] for file, found in captionless.items() if file not in merged]
    return [*merged.values(), *problems], uncaptioned
