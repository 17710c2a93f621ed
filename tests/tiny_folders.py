"""Tiny image folders that several test folders build."""

from __future__ import annotations

import io
import tarfile

from PIL import Image


def class_folder(root, per_class: int = 3):
    """``root/a`` and ``root/b``, each with ``per_class`` 20x16 RGB PNGs of different reds; returns ``root``."""
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            Image.new("RGB", (20, 16), (index * 40, 0, 0)).save(root / label / f"{index}.png")
    return root


def write_tar(path, members: dict[str, bytes]) -> None:
    """A plain (uncompressed) tar of ``members``: {member name: bytes}, e.g. a webdataset shard."""
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
