"""Which files of an image folder are images: the extensions read, companion files ignored, hidden files left out.

Linked folders are followed (each real folder once), so class folders assembled from symbolic links are read whole.
"""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")  # a GIF gives its first frame
# Files beside the images that are not meant as images (captions, annotations): ignored without a word.
COMPANION_EXTENSIONS = (".txt", ".json", ".jsonl", ".csv", ".xml", ".md")
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
