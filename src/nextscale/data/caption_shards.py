"""``CaptionShardDataset``: webdataset-style uncompressed ``.tar`` shards, indexed once by member offset."""

from __future__ import annotations

import itertools
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import (
    CAPTION_SUFFIX,
    CaptionDataset,
    CaptionedImage,
    TarMember,
    _Candidate,
    _clean,
    decode_caption_text,
)
from nextscale.data.image_listing import IMAGE_EXTENSIONS

PROBED_MEMBERS = 1_000  # members looked at to tell a shard from another .tar (``first_captioned_key``)
_COMPRESSED_MAGIC = {b"\x1f\x8b": "gzip", b"BZ": "bzip2", b"\xfd7": "xz"}


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

    def split_key(self, sample: CaptionedImage) -> str:
        """The sample's webdataset key (``a/0001``), without its shard's name: re-sharding the data keeps its split."""
        return sample.name[len(str(sample.source.shard)) + 1 :]  # name is "{shard}:{key}"

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
        dotted_parts: dict[tuple[str, str], list[str]] = {}  # (key, "image" | "caption") -> those members
        owners: dict[tuple[str, str], str] = {}  # (key, "image" | "caption") -> the member that gave it
        try:
            with tarfile.open(shard, mode="r:") as tar:
                for member in tar:  # reads headers only, seeking past the data
                    if not member.isfile() or (parts := _key_and_extension(member.name)) is None:
                        continue
                    key, extension = parts
                    last = "." + extension.rpartition(".")[2]
                    if "." in extension and (last in IMAGE_EXTENSIONS or last == CAPTION_SUFFIX):
                        dotted.setdefault(key, member.name)  # "a.1.png": key "a", extension "1.png"
                        part = "caption" if last == CAPTION_SUFFIX else "image"
                        dotted_parts.setdefault((key, part), []).append(member.name)
                    elif "." + extension in IMAGE_EXTENSIONS:
                        _claim(owners, shard, key, "image", member.name)
                        images[key] = TarMember(shard, member.offset_data, member.size)
                    elif extension == "txt":
                        _claim(owners, shard, key, "caption", member.name)
                        raw = tar.extractfile(member).read()
                        try:
                            captions[key] = decode_caption_text(raw)
                        except UnicodeDecodeError:
                            captions[key] = None
                    # other members (.json, .cls, ...) belong to other tasks
        except tarfile.TarError as err:
            raise ValueError(f"cannot read shard {shard}: {err}; the file is truncated or not a tar") from err
        _refuse_dotted_collisions(shard, dotted_parts, images, captions)
        candidates = []
        for key in dict.fromkeys([*images, *captions]):  # first appearance order, no duplicates
            name = f"{shard}:{key}"
            if key not in images:
                candidates.append(_Candidate(name, problem="missing_image"))
            elif key not in captions:
                candidates.append(_Candidate(name, problem="missing_caption"))
            elif captions[key] is None:
                candidates.append(_Candidate(name + ".txt", problem="caption_not_utf8"))
            elif not (texts := _clean(captions[key].splitlines())):
                candidates.append(_Candidate(name + ".txt", problem="empty_caption"))  # the member to fix
            else:
                candidates.append(_Candidate(name, texts, images[key]))
        # Multi-part extensions ("x.seg.png") are a webdataset sample's other parts; they are counted only where
        # the sample has no image or no caption of its own, i.e. where a dotted file name would otherwise vanish.
        unpaired = [name for key, name in dotted.items() if not (key in images and key in captions)]
        return candidates + [_Candidate(f"{shard}:{name}", problem="dotted_name") for name in unpaired]


def _key_and_extension(member_name: str) -> tuple[str, str] | None:
    """A member's webdataset key and its lower-case extension, split at the file name's first dot: ``a/0001.PNG`` ->
    (``a/0001``, ``png``), ``a/0001.seg.png`` -> (``a/0001``, ``seg.png``); None without a stem or an extension."""
    folder, _, file_name = member_name.rpartition("/")
    stem, dot, extension = file_name.partition(".")
    if not dot or stem == "":
        return None
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def first_captioned_key(shard: Path) -> str | None:
    """The first key among ``shard``'s first ``PROBED_MEMBERS`` members with both an image and a ``.txt`` member, or
    None: a webdataset shard of captioned images has such a pair at its start (a sample's parts are written
    together), while a stray ``.tar`` (a backup, another task's archive) or a file that is no plain tar has none."""
    images: set[str] = set()
    captions: set[str] = set()
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in itertools.islice(tar, PROBED_MEMBERS):  # headers only
                if not member.isfile() or (parts := _key_and_extension(member.name)) is None:
                    continue
                key, extension = parts
                if "." + extension in IMAGE_EXTENSIONS:
                    images.add(key)
                elif "." + extension == CAPTION_SUFFIX:
                    captions.add(key)
                else:
                    continue
                if key in images and key in captions:
                    return key
    except (tarfile.TarError, OSError):
        return None
    return None


def _claim(owners: dict[tuple[str, str], str], shard: Path, key: str, part: str, member: str) -> None:
    """Record ``member`` as sample ``key``'s image or caption; a second one for the same part is refused.

    Refused rather than paired: a tar keeps every copy of a name (``tar -r`` appends), and which copy is meant (the
    first, which a reader meets first, or the last, which ``tar -x`` leaves on disk) cannot be told; taking either
    silently drops a picture, and taking the image and the caption from different copies mislabels it (webdataset
    stops on a repeated part of one sample too). ``a.png`` beside ``a.jpg`` is the same conflict: two images, one key.
    """
    first = owners.get((key, part))
    if first is not None:
        raise ValueError(
            f"shard {shard} holds two {part}s for sample {key!r} ({first} and {member}); a key names one sample: "
            "rename or remove one of them and write the shard again"
        )
    owners[(key, part)] = member


def _refuse_dotted_collisions(
    shard: Path, dotted_parts: dict[tuple[str, str], list[str]], images: dict[str, Any], captions: dict[str, Any]
) -> None:
    """Refuse two dotted members of one kind that share a key which has no plain member of that kind:
    ``photo.2024.png`` and ``photo.2025.png`` are two samples in a folder, but both key ``photo`` in a shard (the key
    ends at the first dot), so neither could be read as the other's image and the pictures would be lost.

    A sample with its own ``photo.png`` (or ``photo.txt``) keeps its dotted members as its other webdataset parts
    (``photo.seg.png``); a single dotted member is counted as a dotted name, as before.
    """
    for (key, part), members in dotted_parts.items():
        own = images if part == "image" else captions
        if len(members) < 2 or key in own:
            continue
        shown = " and ".join(members[:2]) + (f" (and {len(members) - 2} more)" if len(members) > 2 else "")
        folder, slash, file_name = members[0].rpartition("/")
        renamed = folder + slash + file_name.replace(".", "_", file_name.count(".") - 1)  # a.1.png -> a_1.png
        raise ValueError(
            f"shard {shard}: {shown} share the webdataset key {key!r} (a key ends at the first dot of the file name), "
            f"so they cannot be told apart; rename each without its inner dots (e.g. {renamed}, with its caption "
            "renamed alike) and write the shard again"
        )
