"""``CaptionFolderDataset``: images under a folder, each with a same-stem ``.txt`` file of captions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import CAPTION_SUFFIX, CaptionDataset, _Candidate, _clean
from nextscale.data.images import IMAGE_EXTENSIONS


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
