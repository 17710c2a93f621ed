"""Captioned data passed without ``captions:``: a class-folder data spec that holds captioned images is refused with
the fix, or named in a warning where it may be meant as class folders (``note_unused_files``); a manifest or shard
file is refused (``refuse_caption_file``). ``nextscale.training.data_specs`` runs these checks before it reads an
image folder, and ``nextscale info`` uses ``captioned_data_in`` to describe a folder. Labelled data passed to a text
model is refused with both fixes (``refuse_labelled_data_for_text``).
"""

from __future__ import annotations

import json
from pathlib import Path

LOOKED_AT_FILES = 5_000  # files looked at for captions beside the images (a hint, not a scan)


def captioned_data_in(folder: Path) -> str | None:
    """What in ``folder`` says it holds captioned images, read only through ``captions:`` (None when nothing does):
    ``"captions.jsonl"`` (or ``"captions.csv"``), ``"3 .tar shards"``, or ``".txt captions beside its images"`` (the
    first ``LOOKED_AT_FILES`` files under it looked at). ``nextscale.data.captions.open_caption_dataset`` reads the
    first two in this order, and tells shards from stray ``.tar`` files as ``_shards_at`` does."""
    from itertools import islice

    from nextscale.data.caption_base import MANIFEST_NAMES
    from nextscale.data.image_listing import IMAGE_EXTENSIONS

    if not folder.is_dir():
        return None
    manifest = next((name for name in MANIFEST_NAMES if (folder / name).is_file()), None)
    if manifest is not None:
        return manifest
    files = list(islice(folder.rglob("*"), LOOKED_AT_FILES))
    stems = {path.with_suffix("") for path in files if path.suffix.lower() in IMAGE_EXTENSIONS}
    captioned_images = any(path.suffix.lower() == ".txt" and path.with_suffix("") in stems for path in files)
    shards = len(_shards_at(folder, captioned_images))
    if shards:
        return f"{shards} .tar {'shard' if shards == 1 else 'shards'}"
    return ".txt captions beside its images" if captioned_images else None


def _shards_at(folder: Path, captioned_images: bool) -> list[Path]:
    """The ``.tar`` files at ``folder``'s root that ``captions:`` reads as webdataset shards, by the rule of
    ``nextscale.data.captions.holds_shards``: all of them when no image beside them has a caption (the shard reader
    then says what is wrong with them); else those holding an image + ``.txt`` pair near their start
    (``first_captioned_key``), a stray backup ``.tar`` beside captioned images being none. Unlike ``holds_shards``
    this neither warns nor refuses: the folder was passed as class data."""
    from nextscale.data.caption_shards import first_captioned_key

    tars = sorted(folder.glob("*.tar"))
    if not captioned_images:
        return tars
    return [tar for tar in tars if first_captioned_key(tar) is not None]


def _root_files(folder: Path) -> str:
    """The manifest or ``.tar`` files at ``folder``'s root that ``captioned_data_in`` found, named for a message:
    ``captions.csv``, ``backup.tar``, ``a.tar and 2 more``."""
    from nextscale.data.caption_base import MANIFEST_NAMES

    manifest = next((name for name in MANIFEST_NAMES if (folder / name).is_file()), None)
    if manifest is not None:
        return manifest
    shards = sorted(path.name for path in folder.glob("*.tar"))
    return shards[0] + (f" and {len(shards) - 1} more" if len(shards) > 1 else "")


def holds_captions(folder: Path) -> bool:
    """Whether the manifest or a ``.tar`` shard at ``folder``'s root reads as captioned images (what ``captions:``
    would read), from its first line or its first members: a ``captions.jsonl`` whose first record names an
    ``image``, a ``captions.csv`` with ``image`` and ``caption`` columns, or a ``.tar`` holding an image + ``.txt``
    pair near its start (``first_captioned_key``, as ``captions.holds_shards`` tells a shard). A stray file (a backup
    ``.tar`` of a class folder, a table of other columns) does not."""
    import csv
    from itertools import islice

    from nextscale.data.caption_shards import first_captioned_key

    if (folder / "captions.jsonl").is_file():
        with open(folder / "captions.jsonl", "rb") as handle:
            line = next((raw for raw in islice(handle, 100) if raw.strip()), b"")
        try:
            record = json.loads(line.decode("utf-8-sig", errors="replace"))
        except json.JSONDecodeError:
            return False
        return isinstance(record, dict) and "image" in record
    if (folder / "captions.csv").is_file():
        with open(folder / "captions.csv", encoding="utf-8-sig", errors="replace", newline="") as handle:
            header = next(csv.reader(handle), [])
        return {"image", "caption"} <= set(header)
    # compressed or not a tar: no captioned key (captions: could not read it either)
    return any(first_captioned_key(tar) is not None for tar in sorted(folder.glob("*.tar")))


def refuse_labelled_data_for_text(spec: str) -> None:
    """Refuse ``--data SPEC`` read as labelled data (Fashion-MNIST or class folders) for a text model
    (``--text-encoder``) in one line naming both fixes, before any data is read: the trainer would only find the
    labels at its first batch, with no fix."""
    if spec.startswith("captions:"):
        return
    fashion_mnist = spec == "fashion-mnist" or spec.startswith("fashion-mnist:")
    if not fashion_mnist and not Path(spec).exists():
        return  # the data reader says that it does not exist
    if not fashion_mnist:
        refuse_caption_file(spec)  # a manifest or shard file: its own message
        found = captioned_data_in(Path(spec))
        if found is not None:
            raise ValueError(
                f"--data {spec} holds {found}, read only through the captions: prefix (without it a folder is read as "
                f"class sub-folders), and --text-encoder trains a text model: pass --data captions:{spec}"
            )
    kind = "Fashion-MNIST's class labels" if fashion_mnist else "class labels (a folder is read as class sub-folders)"
    raise ValueError(
        f"--data {spec} gives {kind}, but a text model needs captioned data (--text-encoder): pass --data "
        "captions:PATH (images with captions), or leave out --text-encoder to train a class model"
    )


def refuse_caption_file(spec: str) -> None:
    """Refuse a manifest or shard file passed without ``captions:`` in one line naming the prefix (the folder reader
    would call the file a folder that "does not exist")."""
    path = Path(spec)
    if path.is_file() and path.suffix.lower() in (".jsonl", ".csv", ".tar"):
        raise ValueError(
            f"{spec} is a file of captioned images ({path.suffix.lower()}), read only through the captions: prefix; "
            f"pass --data captions:{spec} for a text model (class data is a folder of class sub-folders)"
        )


def note_unused_files(class_root: Path, spec: str) -> None:
    """Refuse, or warn about (rank 0), files a class-folder dataset leaves unused that say the user meant something
    else: captioned images (``captioned_data_in``) and images lying directly in the folder (class images go in its
    sub-folders).

    Captioned data is refused when the folder cannot be meant as class folders: it has no class sub-folder (it
    would fail anyway, with no word of ``captions:``), or a manifest or shards lie beside a single one (the images/
    folder of a ``captions.jsonl``: a one-class model, its captions ignored). ``.txt`` captions in class folders,
    or a manifest or shards beside two or more classes, are only named: a labelled dataset may ship captions too.

    Raises:
        ValueError: one line naming what was found and ``--data captions:SPEC`` (on every rank alike).
    """
    from nextscale import distributed
    from nextscale.data.image_listing import IMAGE_EXTENSIONS, is_hidden

    found = captioned_data_in(class_root)
    classes = [path.name for path in class_root.iterdir() if path.is_dir() and not is_hidden(path.name)]
    beside = found is not None and not found.startswith(".txt")  # a manifest or shards, not captions in classes
    stray = _root_files(class_root) if beside else ""
    if beside and classes and not holds_captions(class_root):
        found = None  # a stray file beside class folders (a backup .tar, some other table): only named below
    if found is not None and (not classes or (beside and len(classes) == 1)):
        read_as = f"its one sub-folder {classes[0]}/ would be a single class" if classes else "it has none"
        keep = f", or move {stray} out to train a one-class model on {classes[0]}/" if classes else ""
        raise ValueError(
            f"{class_root} holds {found}, ignored without the captions: prefix (a folder is read as class "
            f"sub-folders, and {read_as}); pass --data captions:{spec} for a text model{keep}"
        )
    if not distributed.is_main():
        return
    logger = distributed.get_logger("nextscale.data")
    if beside and found is None:
        logger.warning(
            "%s: %s at its root holds no image captions and is not read (class sub-folders are)", class_root, stray
        )
    loose = [path for path in class_root.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS]
    if loose:
        logger.warning(
            "%d %s directly in %s and %s not used: a class model reads DIR/CLASS_NAME/ sub-folders, one per class "
            "(e.g. %s)",
            len(loose),
            "image lies" if len(loose) == 1 else "images lie",
            class_root,
            "is" if len(loose) == 1 else "are",
            loose[0].name,
        )
    if found is not None:
        logger.warning(
            "%s holds %s, which %s ignored here (class sub-folders are read); to use the captions, pass --data "
            "captions:%s (and train a text model with --text-encoder)",
            class_root,
            found,
            "are" if found.endswith("s") else "is",
            spec,
        )
