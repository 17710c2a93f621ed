"""Image-caption datasets for text-to-image training: (image tensor in [-1, 1], caption str) pairs.

Three sources, one behaviour (``open_caption_dataset`` picks the right one for a path)::

    caption folder                 manifest                                   webdataset shards
    root/                          root/captions.jsonl (or .csv)              shards/shard-00000.tar
      cat.png   cat.txt              {"image": "images/0.png",                  0001.png  0001.txt
      sub/dog.jpg  sub/dog.txt        "caption": "a cat"}                       0002.jpg  0002.txt
                                     {"image": "images/1.png",                  ...
                                      "caption": ["a dog", "a puppy"]}

- **Folder**: every image under ``root`` (recursive; hidden files skipped) with a ``.txt`` file of the same
  stem next to it. Each non-blank line of the ``.txt`` is one caption (a repeated caption counts once, in every
  source). A folder holding ``train/`` and ``val/`` (or ``validation/``, ``test/``) sub-folders is two datasets,
  training and held-out (``open_caption_splits``), whatever their format; a caption folder with ``val/`` but no
  ``train/`` is refused there, as reading it recursively would train on the held-out pairs.
- **Manifest**: JSONL (one object per line) or CSV (header with ``image`` and ``caption`` columns, one caption
  per row; repeat the image on several rows for several captions). ``image`` is relative to the manifest's
  folder (or absolute); in JSONL ``caption`` may be a string or a list of strings. An image listed on several
  lines or rows (by any path to the same file) is one sample with all their captions; a line that lists it
  without a caption is named in a warning (``dataset.uncaptioned_lines``), not counted as a skipped sample.
- **Shards**: uncompressed webdataset ``.tar`` files, read with Python's ``tarfile``, so the ``data`` extra
  (webdataset) is not needed. A member's key is its path up to the first dot of the file name
  (``a/0001.png`` and ``a/0001.txt`` share key ``a/0001``), as in webdataset. The shards are indexed once at
  construction (member offsets; captions are read then), so the dataset is map-style and works with
  ``ResumableDistributedSampler`` like every other dataset here; each access reads one member by offset.
  Compressed shards (``.tar.gz``) are refused with a message: random access would re-read the stream, and so is
  a shard with two images or two captions for one key (a member added twice, or ``a.png`` beside ``a.jpg``).

Manifests are UTF-8; caption files (``.txt``, in folders and shards) are UTF-8, or UTF-16/UTF-32 with a
byte-order mark (as Windows editors save "Unicode" text); a mark is dropped (without one, UTF-16/32 text reads
as UTF-8 full of NUL characters, and is refused as not UTF-8). Bad samples are skipped and
counted: a missing or empty caption, a caption file or manifest line that cannot be decoded so (counted as
``caption_not_utf8``), a manifest line that is not a record, a shard
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

Where things live: the shared base (``CaptionDataset``, skip counting, caption choice) in ``caption_base``, one
module per source (``caption_folders``, ``caption_manifests``, ``caption_shards``), and here the functions that
pick the source for a path (``open_caption_dataset``, ``open_caption_splits``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import CaptionDataset
from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset
from nextscale.data.folders import HELD_OUT_NAMES

MANIFEST_NAMES = ("captions.jsonl", "captions.csv")


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


def _is_caption_folder(path: Path) -> bool:
    """Whether ``open_caption_dataset`` reads the folder ``path`` as images with ``.txt`` captions (recursively)."""
    return not any((path / name).is_file() for name in MANIFEST_NAMES) and not any(path.glob("*.tar"))


def open_caption_splits(
    path: str | os.PathLike, size: int, split: str | None = None, **options: Any
) -> tuple[CaptionDataset, CaptionDataset | None]:
    """(training, held-out) caption datasets of ``path``; the held-out one uses center crops.

    A folder with a ``train/`` sub-folder and a ``val/`` (or ``validation/``, ``test/``) one holds both splits,
    each in any format ``open_caption_dataset`` reads (given as ``DIR/train`` too); any other path is training data
    alone (held-out None). A caption folder with a ``val/`` (or ``validation/``, ``test/``) sub-folder but no
    ``train/`` one is refused: it is read recursively, so its held-out pairs would be trained on.

    Args:
        path: the caption data.
        size: output side in pixels.
        split: None for both; "train" or "val"/"test" for that split alone, as the first element.
        options: passed on to ``CaptionDataset`` (``seed``, ``channels``, ``bad_images``, ...).
    """
    root = Path(path)
    parent = root.resolve().parent
    if root.resolve().name == "train" and any((parent / name).is_dir() for name in HELD_OUT_NAMES):
        root = parent  # captions:photos/train means photos: its val/ sibling is the held-out split, as for images
    train_dir = root / "train"
    held_out_dir = next((root / name for name in HELD_OUT_NAMES if (root / name).is_dir()), None)
    if split is not None and split not in ("train", "val", "test"):
        raise ValueError(f"split must be train, val or test, got {split!r}")
    if not train_dir.is_dir():
        if held_out_dir is not None and _is_caption_folder(root):
            # Read recursively, the folder would train on its own held-out pairs (and hold nothing out).
            raise ValueError(
                f"caption folder {root} has a {held_out_dir.name}/ sub-folder but no train/ one, so its held-out "
                f"pairs would be trained on; move the other image + caption pairs into {root / 'train'}"
            )
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
