"""``CaptionShardDataset``: webdataset-style uncompressed ``.tar`` shards, indexed once by member offset."""

from __future__ import annotations

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
from nextscale.data.images import IMAGE_EXTENSIONS

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
        owners: dict[tuple[str, str], str] = {}  # (key, "image" | "caption") -> the member that gave it
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
