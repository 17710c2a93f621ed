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
  source).
- **Manifest**: JSONL (one object per line) or CSV (header with ``image`` and ``caption`` columns, one caption per row;
  repeat the image on several rows for several captions). ``image`` is relative to the manifest's folder (or absolute);
  in JSONL ``caption`` may be a string or a list of strings. Hugging Face imagefolder's ``metadata.jsonl``/``.csv`` is
  read too, its ``file_name`` as ``image`` and ``text`` as ``caption`` (in any manifest); JSONL records with neither
  image key before any with one stop construction, naming the keys they have (later, one is a bad record). An image
  listed on several lines or rows (by any path to the same file) is one sample with all their captions; a line that
  lists it without a caption, or whose caption is not UTF-8, is named in a warning (``dataset.uncaptioned_lines``,
  ``dataset.undecodable_lines``), not counted as a skipped sample (an image no line captions is one). An image file
  under the manifest's folder that no line names is a skipped sample too (``unlisted_image``), as an image without its
  ``.txt`` is in a folder; a sub-folder holding a manifest of its own is not looked into.
- **Shards**: uncompressed webdataset ``.tar`` files, read with Python's ``tarfile``, so the ``data`` extra
  (webdataset) is not needed. A member's key is its path up to the first dot of the file name
  (``a/0001.png`` and ``a/0001.txt`` share key ``a/0001``), as in webdataset. A dotted file name keys
  differently here than in a folder: ``photo.2024.png`` is sample ``photo.2024`` in a caption folder or manifest
  (the path without its last extension) but a part ``2024.png`` of sample ``photo`` in a shard, so it is no
  sample's image there (counted as a dotted name; a ``photo.png`` + ``photo.txt`` sample ignores it as one of its
  other parts), and two such members of one key (``photo.2024.png`` beside ``photo.2025.png``, or their ``.txt``
  files) are refused: rename them without the inner dot (``photo_2024.png``) before writing the shards. The
  shards are indexed once at construction (member offsets; captions are read then), so the dataset is map-style
  and works with ``ResumableDistributedSampler`` like every other dataset here; each access reads one member by
  offset.
  Compressed shards (``.tar.gz``) are refused with a message: random access would re-read the stream, and so is
  a shard with two images or two captions for one key (a member added twice, or ``a.png`` beside ``a.jpg``).
- **Which one a folder is**: a manifest wins (the first of ``captions.jsonl``, ``captions.csv``, ``metadata.jsonl``,
  ``metadata.csv``; the others are not read); otherwise the folder is shards when its ``.tar`` files are all that holds
  data, and images with ``.txt`` captions when no ``.tar`` beside them holds an image + caption pair (a stray backup
  ``.tar`` is named in a warning and ignored). A ``.tar`` shard beside captioned images is refused with the fix (move
  one or the other into a folder of its own): which was meant cannot be told.

Manifests are UTF-8; caption files (``.txt``, in folders and shards) are UTF-8, or UTF-16/UTF-32 with a
byte-order mark (as Windows editors save "Unicode" text); a mark is dropped (without one, UTF-16/32 text reads
as UTF-8 full of NUL characters, and is refused as not UTF-8). Bad samples are skipped and
counted: a missing or empty caption, a caption file that cannot be decoded so or an image whose manifest lines
all cannot (counted as ``caption_not_utf8``), a manifest line that is not a record, a shard
member whose name has a dot before its extension (its webdataset key would end at that dot), an image file
that does not exist, or whose header Pillow cannot read, or that is tiny or huge by the image folders' rules
(``nextscale.data.images``; ``check_images``, on by default, opens every image header at construction). One
``logging`` line summarises the counts by reason, each with an example and, where not obvious, the fix (a
caption that is not UTF-8: re-save it so); ``dataset.skipped`` holds them and ``dataset.bad_files`` names the bad
images. With ``bad_images="fail"`` any of them stops construction instead, named with the fix (a careful run
loses no sample), as does a manifest line that is not UTF-8, or that has no caption, although its image keeps
other lines' captions (without ``fail`` it is named in a warning, ``dataset.undecodable_lines`` or
``dataset.uncaptioned_lines``). An image that passes the header check
but fails to decode (a truncated file) is found at access time: the next readable sample is returned in its place
and ``skipped["corrupt_image"]`` grows (in that process; DataLoader workers keep their own counts); ``read`` (for
passes that must see every sample once) raises instead.

When an image has several captions one is drawn per access from ``numpy.random.default_rng([seed, epoch,
index])``, the same generator that then draws the crop, so sample ``index`` of epoch ``e`` is identical on
every worker, machine and resume (the training loop calls ``set_epoch``).

The default ``mid_reso`` is 1.0 (no crop margin) and flips are off: captions may name positions ("in the
top left") that a crop margin shifts and a flip contradicts.

Held-out data (``open_caption_splits``): a folder holding ``train/`` and ``val/`` (or ``validation/``,
``test/``) sub-folders is two datasets, training and held-out, whatever their format; a caption folder with
``val/`` but no ``train/`` is refused, as reading it recursively would train on the held-out pairs. Any other
caption data (a folder with ``train/`` alone: that ``train/``) gives up a small held-out split, as a class folder
without ``val/`` does (``nextscale.data.folders``; the data summary's ``held-out:`` line says how many): a sample
is held out when a hash of its name and the seed 0 falls under 5 % (``folders.carve_held_out_by_name``), so about
5 % are, at least 1 of 2 or more and never all; a single pair holds nothing out. The name is the image's path
relative to the folder (or to the manifest's folder, however the manifest and its lines spell it) without its
extension, or a shard sample's key without the shard's name: ``sub/dog`` in all three, so
the same images converted from one source to another keep their split. So the split is the same on every machine,
DDP rank and run, whatever order the files are listed in, the images already there stay on their side when images
are added or shards regrouped (all but the one a small folder holds out when no draw is under 5 %), and ``train``,
``train-tokenizer`` and ``tokenize --split train|val`` agree on it.
Held-out samples use center crops. ``carve=False`` reads the whole source as training data, as versions before
this split did (a training run started then resumes so, see ``nextscale.training.data_specs``).

Worked example: 60 captioned images -> about 3 held out (each image's hash draw is uniform, so it varies with the
names: 1 to 7 for most folders), the rest trained on; 10 images -> usually none under 5 %, so the 1 whose draw
is lowest; 1 image -> trained on, no held-out metrics.

Where things live: the shared base (``CaptionDataset``, skip counting, caption choice) in ``caption_base``, one
module per source (``caption_folders``, ``caption_manifests``, ``caption_shards``), and here the functions that
pick the source for a path (``open_caption_dataset``, ``open_caption_splits``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from nextscale.data.caption_base import MANIFEST_NAMES, SHOWN_EXAMPLES, CaptionDataset
from nextscale.data.caption_folders import CaptionFolderDataset, caption_folder_files
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset, first_captioned_key
from nextscale.data.folders import HELD_OUT_NAMES, carve_held_out_by_name, held_out_note

logger = logging.getLogger(__name__)


def open_caption_dataset(path: str | os.PathLike, size: int, **options: Any) -> CaptionDataset:
    """Pick the caption source for ``path``.

    A ``.jsonl``/``.csv`` file is a manifest and a ``.tar`` file a shard; a folder holding
    ``captions.jsonl`` or ``captions.csv`` (or Hugging Face's ``metadata.jsonl``/``.csv``) is read through that
    manifest (the first of them in that order), a folder of ``.tar`` files as
    shards, and any other folder as images with ``.txt`` captions; a ``.tar`` file beside captioned images is
    decided by what it holds (``holds_shards``). ``options`` go to ``CaptionDataset``.
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
    if holds_shards(path):
        return CaptionShardDataset(path, size, **options)
    return CaptionFolderDataset(path, size, **options)


def holds_shards(folder: Path) -> bool:
    """Whether a folder without a manifest is read as webdataset shards rather than as images with ``.txt`` captions,
    by what it holds: its ``.tar`` files when nothing beside them is an image with a caption; the images when no
    ``.tar`` holds an image + ``.txt`` pair near its start (``first_captioned_key``: a stray backup or archive, named
    in a warning and ignored).

    Raises:
        ValueError: the folder holds both shards and captioned images, so which one is meant cannot be told.
    """
    tars = sorted(folder.glob("*.tar"))
    if not tars:
        return False
    images, captions = caption_folder_files(folder)
    captioned = [image for image in images if image.with_suffix("") in captions]
    if not captioned:
        return True  # only the .tar files can hold the data: the shard reader says what is wrong with them
    shards = [tar for tar in tars if first_captioned_key(tar) is not None]
    if shards:
        others = f" (and {len(shards) - 1} more .tar shards)" if len(shards) > 1 else ""
        raise ValueError(
            f"caption folder {folder} holds both a webdataset shard, {shards[0].name}{others}, and {len(captioned)} "
            f"images with .txt captions (e.g. {captioned[0].relative_to(folder)}); move the shards or the images into "
            "a folder of their own and pass that one"
        )
    stray = ", ".join(tar.name for tar in tars[:SHOWN_EXAMPLES]) + (" ..." if len(tars) > SHOWN_EXAMPLES else "")
    logger.warning(
        "caption folder %s: ignoring %s, which holds no image + .txt caption pair (not a webdataset shard); "
        "reading its %d captioned images",
        folder,
        stray,
        len(captioned),
    )
    return False


def _is_caption_folder(path: Path) -> bool:
    """Whether ``open_caption_dataset`` reads the folder ``path`` as images with ``.txt`` captions (recursively)."""
    return not any((path / name).is_file() for name in MANIFEST_NAMES) and not holds_shards(path)


def open_caption_splits(
    path: str | os.PathLike, size: int, split: str | None = None, carve: bool = True, **options: Any
) -> tuple[CaptionDataset, CaptionDataset | None]:
    """(training, held-out) caption datasets of ``path``; the held-out one uses center crops.

    A folder with a ``train/`` sub-folder and a ``val/`` (or ``validation/``, ``test/``) one holds both splits,
    each in any format ``open_caption_dataset`` reads (given as ``DIR/train`` too). Any other path, and a folder with
    ``train/`` alone (carved from ``train/``, as ``captions:DIR/train`` is), gives up a small held-out split carved
    from it (see the module docstring), named in each dataset's ``split_note``. A caption
    folder with a ``val/`` (or ``validation/``, ``test/``) sub-folder but no ``train/`` one is refused: it is read
    recursively, so its held-out pairs would be trained on.

    Args:
        path: the caption data.
        size: output side in pixels.
        split: None for both; "train" or "val"/"test" for that split alone, as the first element.
        carve: hold out a split from data without ``train/`` + ``val/``; False reads all of it as training data
            (held-out None), as runs started before the split did.
        options: passed on to ``CaptionDataset`` (``seed``, ``channels``, ``bad_images``, ``train``, ...).

    Returns:
        (train, held_out); ``held_out`` is None when nothing is held out (one usable pair, ``carve`` False, or
        ``split`` given).
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
        if split in ("val", "test") and not carve:
            raise ValueError(
                f"caption data {root} has no held-out split (a train/ and a val/ sub-folder); tokenize the "
                "held-out captions as their own set, e.g. --data captions:DIR/val"
            )
        dataset = open_caption_dataset(root, size, **options)
        return carve_caption_held_out(dataset, split) if carve else (dataset, None)
    if held_out_dir is None:  # DIR/train alone: its split is carved from it, as from an image folder's train/
        if split in ("val", "test") and not carve:
            raise ValueError(f"{root} has train/ but no val/ (or validation/, test/) sub-folder to read")
        train = open_caption_dataset(train_dir, size, **options)
        return carve_caption_held_out(train, split) if carve else (train, None)
    if split in ("val", "test"):
        return open_caption_dataset(held_out_dir, size, **{**options, "train": False}), None
    train = open_caption_dataset(train_dir, size, **options)
    if split is not None:
        return train, None
    return train, open_caption_dataset(held_out_dir, size, **{**options, "train": False})


def carve_caption_held_out(
    dataset: CaptionDataset, split: str | None = None
) -> tuple[CaptionDataset, CaptionDataset | None]:
    """Split ``dataset`` into (training, held-out) by ``folders.carve_held_out_by_name`` of each sample's
    ``split_key``; both keep the source's order and carry the data summary's line as ``split_note``.

    Args:
        dataset: the whole caption source (its transform is the training side's).
        split: None for both; "train" for the training side alone, "val"/"test" for the held-out one alone (center
            crops), each as the first element.

    Raises:
        ValueError: ``split`` asks for the held-out side of data too small to hold any out.
    """
    where = dataset.origin
    held_indices = carve_held_out_by_name([dataset.split_key(sample) for sample in dataset.samples])
    note = held_out_note(where, len(held_indices), len(dataset), sum(dataset.skipped.values()), captioned=True)
    dataset.split_note = note
    held_set = set(held_indices)
    kept = [index for index in range(len(dataset)) if index not in held_set]
    carved_from = f"{where} (carved out, as there is no {HELD_OUT_NAMES[0]}/ folder)"
    if split in ("val", "test"):
        if not held_indices:
            raise ValueError(
                f"caption data {where} has no {HELD_OUT_NAMES[0]}/ folder and too few usable image-caption pairs to "
                "hold any out (2 or more are needed); add DIR/train and DIR/val sub-folders"
            )
        return dataset.center_cropped().select(held_indices, carved_from), None
    if not held_indices:
        return dataset, None  # nothing to hold out: the source itself, named as it is
    pairs = "image-caption pair" if len(held_indices) == 1 else "image-caption pairs"
    training = dataset.select(kept, f"{where} (without the {len(held_indices)} held-out {pairs})")
    if split is not None:
        return training, None
    return training, dataset.center_cropped().select(held_indices, carved_from)
