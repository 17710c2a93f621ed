"""``CaptionFolderDataset``: images under a folder, each with a same-stem ``.txt`` file of captions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import (
    CAPTION_SUFFIX,
    CaptionDataset,
    CaptionedImage,
    _Candidate,
    _clean,
    decode_caption_text,
)
from nextscale.data.image_listing import IMAGE_EXTENSIONS, visible_files


def caption_folder_files(root: Path) -> tuple[list[Path], dict[Path, Path]]:
    """(the image files under ``root``, sorted; each caption file by its path without the suffix), hidden files left
    out. An image is captioned when ``image.with_suffix("")`` is a key of the second."""
    visible = visible_files(root)
    images = [path for path in visible if path.suffix.lower() in IMAGE_EXTENSIONS]
    # name.txt or name.TXT (cameras and Windows tools write upper-case suffixes); name.txt wins if both exist.
    captions = {path.with_suffix(""): path for path in visible if path.suffix.lower() == CAPTION_SUFFIX}
    return images, captions


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
        images, captions = caption_folder_files(self.root)
        stems = {path.with_suffix("") for path in images}
        # A caption whose image is missing is counted too: a renamed or deleted image should not vanish unseen.
        orphans = [path for stem, path in sorted(captions.items()) if stem not in stems]
        candidates = [self._candidate(path, captions.get(path.with_suffix(""))) for path in images]
        candidates += [_Candidate(str(path), problem="missing_image") for path in orphans]
        self._accept(candidates, self.root)

    def split_key(self, sample: CaptionedImage) -> str:
        """The image's path relative to ``root`` without its extension, with ``/`` (``sub/dog``): the same wherever
        the folder lies, and the webdataset key the image gets in shards made from the folder (same split)."""
        return Path(sample.name).relative_to(self.root).with_suffix("").as_posix()

    @staticmethod
    def _candidate(path: Path, caption_path: Path | None) -> _Candidate:
        if caption_path is None:
            return _Candidate(str(path), problem="missing_caption")
        try:
            text = decode_caption_text(caption_path.read_bytes())
        except UnicodeDecodeError:
            return _Candidate(str(caption_path), problem="caption_not_utf8")
        captions = _clean(text.splitlines())
        if not captions:  # named by the file to fix
            return _Candidate(str(caption_path), problem="empty_caption")
        return _Candidate(str(path), captions, path)
