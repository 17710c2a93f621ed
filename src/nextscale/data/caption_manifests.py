"""``CaptionManifestDataset``: images listed in a JSONL or CSV manifest, with the record parsing it needs."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import CaptionDataset, _Candidate, _clean


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
