"""The data flags of the training commands: what a data spec names, its datasets, and bad files in them.

Data specs: ``fashion-mnist`` (the system copy), ``fashion-mnist:DIR`` (IDX files in DIR), an image
folder: ``DIR/train`` + ``DIR/val`` when both exist (ImageNet layout), else ``DIR`` itself with a small
held-out split carved from it (5 %, at least one image per class, seed 0; see ``nextscale.data.folders``);
or captioned images ``captions:PATH`` (a folder of images with same-name .txt captions, a
folder with captions.jsonl/.csv, a .jsonl/.csv manifest, or .tar shards, each also as ``PATH/train`` +
``PATH/val``; see ``nextscale.data.captions``), which yields (image, caption) pairs for text models. Captioned
data without ``PATH/val`` gives up a small held-out split too: about 5 %, each pair held out or not by a hash of
its image's path (seed 0), at least 1 of 2 or more, so ``train`` reports held-out loss and token error on it.

A training run started before captioned data was split trained on all of it: ``carves_caption_held_out`` tells
such a run from its run directory, so that resuming it keeps its training set (``build_datasets(...,
carve_captions=False)``), and ``caption_split_record`` is what a run records so that its resumes carve again.

Bad image files (``--bad-images skip|fail``, default skip; see ``nextscale.data.images``): at start every
header is checked and one line counts the unusable files by reason (``fail`` refuses to start if there are
any); a file that fails later to decode is skipped then (or stops the run), and a line at the end counts
everything skipped. Captioned data counts the samples it cannot use the same way, captions that are missing, empty
or not UTF-8 included, and ``fail`` stops at any of them (``nextscale.data.captions``).

A folder passed without ``captions:`` that holds captioned data is refused with the fix, or named in a warning
where it may be meant as class folders (``note_unused_files``).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

FASHION_PREFIX = "fashion-mnist"
CAPTIONS_PREFIX = "captions:"
# The run-config field a training run that carves captioned data records, and its value (the rule; another rule
# would get another value). Runs made before the carve lack the field: they resume on the whole data.
CAPTION_SPLIT_FIELD = "caption_held_out"
CAPTION_SPLIT_RULE = "hash of each image's path, 5 %, seed 0"


def carves_caption_held_out(run_dir: str | os.PathLike | None) -> bool:
    """Whether a training run in ``run_dir`` holds out a split of captioned data that has no ``val/``.

    True for a new run (no checkpoint yet) and for a run that recorded ``CAPTION_SPLIT_FIELD``; False for a run
    with checkpoints whose config.json (or, for checkpoints copied without it, the newest checkpoint's recorded
    config) lacks it: it started before captioned data was split and trained on all of it, and resuming it on 5 %
    less would change its training set (its data position would not fit). Every rank reads the same config.json
    before training starts (rank 0 rewrites it only after a barrier), so all agree.
    """
    from nextscale.training import checkpoint as ckpt

    if run_dir is None:
        return True
    path = Path(run_dir) / "config.json"
    checkpoints = ckpt.list_checkpoints(run_dir)
    if not checkpoints:
        return True  # a new run, or a failed start's config.json, which binds nothing
    if not path.is_file():  # checkpoints copied without their config.json (a forked run): theirs tells
        saved = checkpoint_run_config(checkpoints)
        return saved is None or CAPTION_SPLIT_FIELD in saved
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return True  # the run-directory check refuses it, with its own message
    return not isinstance(saved, dict) or CAPTION_SPLIT_FIELD in saved


def checkpoint_run_config(checkpoints: list[Path]) -> dict[str, Any] | None:
    """The run config recorded in the newest of ``checkpoints`` that can be read (its ``configs`` entry), or None.

    The file is memory-mapped, so only the config is read from disk, not the weights; an unreadable file is passed
    over here (the trainer's resume names it)."""
    import pickle
    import zipfile

    import torch

    for checkpoint in reversed(checkpoints):
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError):
            continue  # truncated, corrupt or not a checkpoint: the resume names it
        configs = state.get("configs") if isinstance(state, dict) else None
        if isinstance(configs, dict):
            return configs
    return None


def run_datasets(args: argparse.Namespace, image_size: int, channels: int) -> tuple[Any, Any, dict[str, Any]]:
    """(train, held-out, record) of ``--data`` as the training run in ``--run-dir`` reads it (``build_datasets``; a
    run started before captioned data was split reads all of it, ``carves_caption_held_out``), and the run-config
    entries that record its caption split (``caption_split_record``). (None, None, record) without ``--data``."""
    carve = carves_caption_held_out(args.run_dir)
    if not args.data:
        return None, None, caption_split_record(carve)
    options = {"seed": args.seed, "bad_images": args.bad_images, "carve_captions": carve}
    return (*build_datasets(args.data, image_size, channels, **options), caption_split_record(carve))


def caption_split_record(carve_captions: bool) -> dict[str, Any]:
    """The run-config entries that record whether the run carves captioned data: ``{CAPTION_SPLIT_FIELD:
    CAPTION_SPLIT_RULE}`` when it does, nothing for an older run resumed without the carve (its config.json stays
    as it was, so the config check sees no difference)."""
    return {CAPTION_SPLIT_FIELD: CAPTION_SPLIT_RULE} if carve_captions else {}


def check_tokens_beside_carve(tokens: str | os.PathLike, data: str, train_side: int, held_out) -> None:
    """Refuse ``--tokens T --data SPEC`` when the held-out split is carved from ``SPEC`` (no ``val/``) but ``T`` was
    tokenized from all of ``SPEC`` (``--split all``, or captioned data tokenized before it gave up a split): the
    held-out images would be trained on, and the held-out loss would measure memorisation.

    Args:
        tokens: the ``--tokens`` folder (its manifest.json records the source and split it was made from).
        data: the ``--data`` spec.
        train_side: how many images ``SPEC``'s training side holds (``build_datasets(data)[0]``).
        held_out: ``build_datasets(data)[1]``; only a carved split (one with a ``split_note``) is checked.

    Raises:
        ValueError: one line naming the overlap and the fix.
    """
    from nextscale.data.token_manifest import read_manifest
    from nextscale.training.config import same_place

    if held_out is None or not getattr(held_out, "split_note", None):
        return
    manifest = read_manifest(tokens)
    source = str(manifest.get("source", ""))
    base, _, split = source.rpartition(":")
    if split not in ("train", "val", "test", "all"):  # captioned training tokens record the spec alone
        base, split = source, "train"
    if split not in ("train", "all") or not (base == data or same_place(base, data)):
        return  # held-out tokens, or tokens of other data: nothing to compare
    # "count" is images, not rows of views: a --views N folder's shards are (n, N, L), n the images it tokenized.
    images = int(manifest.get("count", 0)) + len(manifest.get("left_out", []))
    if split == "train" and images <= train_side:
        return  # the training side: disjoint from the carved split
    why = "tokenized with --split all" if split == "all" else "tokenized before captioned data gave up a split"
    raise ValueError(
        f"--tokens {tokens} holds every image of {data} ({why}), so the {len(held_out)} "
        f"{'image' if len(held_out) == 1 else 'images'} held out from "
        f"--data {data} would be trained on: tokenize it again with --split train (and --split val for "
        "--eval-tokens), or name held-out data with --eval-data or --eval-tokens"
    )


def add_bad_images_argument(parser: argparse.ArgumentParser) -> None:
    """--bad-images skip|fail: what an image folder does with corrupt, truncated, tiny or huge files."""
    parser.add_argument(
        "--bad-images",
        choices=("skip", "fail"),
        default="skip",
        help="skip corrupt, truncated, tiny (< 1/8 of the side) or huge image files, named and counted in the log "
        "(default), or stop at the first one, before any work when its header shows it; captioned data (captions:) "
        "also counts images whose caption is missing, empty or not UTF-8 (and manifest lines that are not UTF-8), "
        "and fail stops at those too, naming them (evaluate: a reference image left out is named in the report; a "
        "text model's evaluation stops at one, as each is scored against its own caption)",
    )


SHOWN_BAD_FILES = 3  # bad files named in the log line; the rest are counted


def check_bad_images(datasets, policy: str) -> None:
    """Scan the image-folder datasets' headers and log one line per folder counting unusable files by reason
    (rank 0). A training set and the held-out split carved from the same folder share one scan, so one line
    counts the folder's files: ``checked 180 image files of DIR: all usable``.

    Raises:
        ValueError: ``policy`` is "fail" and some file is unusable (the message names the first ones).
    """
    from nextscale import distributed
    from nextscale.data.images import ImageFolderDataset

    logger = distributed.get_logger("nextscale.data")
    folders: dict[int, list] = {}  # the splits of one folder share ``skipped`` (see data.folders.select)
    for dataset in datasets:
        if isinstance(dataset, ImageFolderDataset):
            folders.setdefault(id(dataset.skipped), []).append(dataset)
    for splits in folders.values():
        scans = [dataset.scan() for dataset in splits]
        origin = str(splits[0].root) if len(splits) > 1 else getattr(splits[0], "origin", splits[0].root)
        count = sum(len(dataset) for dataset in splits)
        where = f"{count} image {'file' if count == 1 else 'files'} of {origin}"
        if any(counts is None for counts in scans):
            logger.info("%s: too many to check before training; bad files are %s as they are read", where, policy)
            continue
        upscaled = sum(counts.pop("upscaled") for counts in scans)
        small = ""
        if upscaled:
            small = f"; {upscaled} {'file' if upscaled == 1 else 'files'} smaller than {splits[0].transform.size} px "
            small += "is upscaled" if upscaled == 1 else "are upscaled"
        bad = sorted({item for dataset in splits for item in dataset.bad_files()})
        if not bad:
            logger.info("checked %s: all usable%s", where, small)
            continue
        found = ", ".join(f"{count} {reason}" for reason, count in sorted(Counter(r for _, r in bad).items()))
        named = ", ".join(f"{path} ({reason})" for path, reason in bad[:SHOWN_BAD_FILES])
        named += f" and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > SHOWN_BAD_FILES else ""
        if policy == "fail":
            raise ValueError(
                f"{len(bad)} of {where} cannot be used ({found}): {named}; "
                "fix or delete them, or pass --bad-images skip to go on without them"
            )
        files = "file" if len(bad) == 1 else "files"
        logger.warning("checked %s: skipping %d bad %s (%s): %s%s", where, len(bad), files, found, named, small)
        for dataset in splits:
            dataset.leave_out_bad()  # no stand-ins: tokenizing and evaluation see each image once, counts stay true


def report_skipped_images(datasets) -> None:
    """One line per image-folder dataset with skipped files, counting them by reason (rank 0; files found bad in
    this rank's DataLoader workers included, see ``ImageFolderDataset.gather_worker_findings``)."""
    from nextscale import distributed
    from nextscale.data.caption_base import CaptionDataset
    from nextscale.data.images import ImageFolderDataset

    logger = distributed.get_logger("nextscale.data")
    for dataset in datasets:
        if isinstance(dataset, CaptionDataset) and dataset.decode_failures:
            failures = dataset.decode_failures
            logger.warning(
                "skipped %d of %d captioned %s of %s that could not be decoded (truncated?): %s",
                len(failures),
                len(dataset),
                "image" if len(dataset) == 1 else "images",
                dataset.origin,
                ", ".join(failures[:SHOWN_BAD_FILES])
                + (f" and {len(failures) - SHOWN_BAD_FILES} more" if len(failures) > SHOWN_BAD_FILES else ""),
            )
        if isinstance(dataset, ImageFolderDataset) and (counts := dataset.skip_counts()):
            found = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
            total = len(dataset) + len(dataset.left_out)
            logger.warning(
                "skipped %d of %d image %s of %s: %s",
                sum(counts.values()),
                total,
                "file" if total == 1 else "files",
                getattr(dataset, "origin", dataset.root),
                found,
            )


def build_datasets(
    spec: str,
    image_size: int,
    channels: int,
    seed: int = 0,
    split: str | None = None,
    bad_images: str = "skip",
    random_crops: bool = False,
    carve_captions: bool = True,
):
    """(train, held-out or None) datasets of (image in [-1, 1], label or caption) for a data spec (see module
    docstring).

    With ``split`` ("train" or "test"/"val") only that split is returned, as the first element, center-cropped;
    with ``random_crops`` too, a "train" split keeps the training transform (the crops training from the images
    makes in each epoch, drawn from ``seed``). Image folders are checked for bad files first
    (``check_bad_images``) under the ``bad_images`` policy. ``carve_captions`` False reads captioned data without
    ``val/`` whole, with no held-out split (a run made before the split, ``carves_caption_held_out``).
    """
    from nextscale.data.fashion_mnist import FashionMNIST

    if split == "all":
        return whole_source(spec, image_size, channels, bad_images), None
    if spec.startswith(CAPTIONS_PREFIX):
        from nextscale.data.captions import open_caption_splits

        # No flips, no crop margin: captions name positions ("on the left"). DIR/train + DIR/val hold both
        # splits; other caption data gives up a held-out split carved by a hash of each image's path.
        path = spec[len(CAPTIONS_PREFIX) :]
        options = {"channels": channels, "seed": seed, "bad_images": bad_images}
        if split is not None and not (random_crops and split == "train"):
            options["train"] = False  # a pass over one split (tokenizing): center crops, as for image folders
        return open_caption_splits(path, image_size, split=split, carve=carve_captions, **options)
    if spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        root = spec.partition(":")[2] or None
        if root is not None and not Path(root).is_dir():
            raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist (from --data {spec})")
        if split is not None:
            return FashionMNIST(root, "test" if split in ("test", "val") else "train", image_size, channels), None
        return (FashionMNIST(root, "train", image_size, channels), FashionMNIST(root, "test", image_size, channels))
    from nextscale.data.folders import folder_layout, open_image_folder

    refuse_caption_file(spec)
    note_unused_files(folder_layout(spec).train_dir, spec)
    # DIR/train + DIR/val, or a plain DIR with a fixed held-out split carved from it (see nextscale.data.folders).
    datasets = open_image_folder(
        spec, image_size, channels, seed=seed, split=split, bad_images=bad_images, random_crops=random_crops
    )
    check_bad_images(datasets, bad_images)
    refuse_all_bad(datasets[0], spec)
    return datasets


def has_own_splits(spec: str) -> bool:
    """Whether the data holds its own held-out split: Fashion-MNIST's test split, ``train/`` + ``val/`` (or
    ``validation/``, ``test/``) sub-folders, or an image folder ``DIR/train`` beside its ``val/``."""
    from nextscale.data.folders import HELD_OUT_NAMES, folder_layout

    if spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        return True
    path = Path(spec.removeprefix(CAPTIONS_PREFIX))
    if spec.startswith(CAPTIONS_PREFIX):
        return (path / "train").is_dir() and any((path / name).is_dir() for name in HELD_OUT_NAMES)
    return path.is_dir() and not folder_layout(path).carved


def whole_source(spec: str, image_size: int, channels: int, bad_images: str = "skip"):
    """Every image of a folder or caption source without ``val/`` (``--split all``, ``--eval-data``), center-cropped,
    nothing held out: a folder that is itself a held-out set, or training data whose held-out set lies elsewhere.
    Data with its own splits (``train/`` + ``val/``, Fashion-MNIST) is refused: name the split."""
    from nextscale.data.captions import open_caption_dataset
    from nextscale.data.folders import folder_layout
    from nextscale.data.images import ImageFolderDataset

    if spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        raise ValueError(f"{spec} has its own train and test splits: name one (--split train or --split test)")
    path = Path(spec.removeprefix(CAPTIONS_PREFIX))
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (from --data {spec})")
    if has_own_splits(spec):
        raise ValueError(f"{spec} holds train/ and val/ sub-folders: name one split (--split train or --split val)")
    if spec.startswith(CAPTIONS_PREFIX):
        # DIR/train alone: that folder (a manifest or shards in it are read as such), as open_caption_splits does
        path = path / "train" if (path / "train").is_dir() else path
        return open_caption_dataset(path, image_size, channels=channels, train=False, bad_images=bad_images)
    options = {"train": False, "channels": channels, "bad_images": bad_images}
    refuse_caption_file(spec)
    note_unused_files(folder_layout(spec).train_dir, spec)
    dataset = ImageFolderDataset(folder_layout(spec).train_dir, image_size, **options)  # DIR/train if only that
    check_bad_images((dataset,), bad_images)
    refuse_all_bad(dataset, spec)
    return dataset


def refuse_all_bad(dataset, spec: str) -> None:
    """Raise ValueError when ``check_bad_images`` left none of an image folder's files, saying why (before the
    trainer's batch check reports 0 samples); when every file was too small, name the training side."""
    from nextscale.data.images import ImageFolderDataset, smallest_side

    if not isinstance(dataset, ImageFolderDataset) or len(dataset) or not (counts := dataset.skip_counts()):
        return
    found = ", ".join(f"{count} {reason}" for reason, count in sorted(counts.items()))
    total = sum(counts.values())
    files = "the one image file" if total == 1 else f"none of the {total} image files"
    problem = f"{files} of --data {spec} {'cannot' if total == 1 else 'can'} be used ({found})"
    if "tiny" not in counts:
        raise ValueError(f"{problem}: fix or replace the {'file' if total == 1 else 'files'} named above")
    size = dataset.transform.size
    smallest = smallest_side(size)
    which = "it has" if total == 1 else "each has" if len(counts) == 1 else "the tiny ones have"
    raise ValueError(
        f"{problem}: {which} a shorter side under {smallest:g} "
        f"px, too small for {size} px training; lower --resolution (or the preset's image size) toward the images' "
        "size, or use larger images"
    )


LOOKED_AT_FILES = 5_000  # files looked at for captions beside the images (a hint, not a scan)


def captioned_data_in(folder: Path) -> str | None:
    """What in ``folder`` says it holds captioned images, read only through ``captions:`` (None when nothing does):
    ``"captions.jsonl"`` (or ``"captions.csv"``), ``"3 .tar shards"``, or ``".txt captions beside its images"`` (the
    first ``LOOKED_AT_FILES`` files under it looked at). ``nextscale.data.captions.open_caption_dataset`` reads the
    first two in this order."""
    from itertools import islice

    from nextscale.data.captions import MANIFEST_NAMES
    from nextscale.data.images import IMAGE_EXTENSIONS

    if not folder.is_dir():
        return None
    manifest = next((name for name in MANIFEST_NAMES if (folder / name).is_file()), None)
    if manifest is not None:
        return manifest
    shards = sum(1 for _ in folder.glob("*.tar"))
    if shards:
        return f"{shards} .tar {'shard' if shards == 1 else 'shards'}"
    files = list(islice(folder.rglob("*"), LOOKED_AT_FILES))
    stems = {path.with_suffix("") for path in files if path.suffix.lower() in IMAGE_EXTENSIONS}
    if any(path.suffix.lower() == ".txt" and path.with_suffix("") in stems for path in files):
        return ".txt captions beside its images"
    return None


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
    from nextscale.data.images import IMAGE_EXTENSIONS, is_hidden

    found = captioned_data_in(class_root)
    classes = [path.name for path in class_root.iterdir() if path.is_dir() and not is_hidden(path.name)]
    beside = found is not None and not found.startswith(".txt")  # a manifest or shards, not captions in classes
    if found is not None and (not classes or (beside and len(classes) == 1)):
        read_as = f"its one sub-folder {classes[0]}/ would be a single class" if classes else "it has none"
        keep = f", or move {found} out to train a one-class model on {classes[0]}/" if classes else ""
        raise ValueError(
            f"{class_root} holds {found}, ignored without the captions: prefix (a folder is read as class "
            f"sub-folders, and {read_as}); pass --data captions:{spec} for a text model{keep}"
        )
    if not distributed.is_main():
        return
    logger = distributed.get_logger("nextscale.data")
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


def data_channels(spec: str, sample: int = 64) -> int | None:
    """Image channels a data spec implies: 1 for Fashion-MNIST; for an image folder 1 when ``sample`` files spread
    evenly over the sorted list (as the data summary reads them) are all grayscale, else 3 (the first files alone
    would be one class's); None (the preset's) for anything else."""
    if spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        return 1
    folder = Path(spec)
    if not folder.is_dir():
        return None
    from PIL import Image

    from nextscale.data.images import IMAGE_EXTENSIONS, visible_files
    from nextscale.data.transforms import GRAY_MODES

    files = [path for path in visible_files(folder) if path.suffix.lower() in IMAGE_EXTENSIONS]
    files = files[:: max(1, len(files) // sample)][:sample]
    modes = set()
    for path in files:
        try:
            with warnings.catch_warnings():  # a huge file is reported once, as "huge", by the dataset's check
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:  # reads the header only
                    modes.add(image.mode)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # bad files are counted and reported by the dataset
    if not modes:
        return None
    return 1 if modes <= GRAY_MODES else 3


def class_count(dataset) -> int | None:
    """Classes of a labelled training set: its class list, or for token shards the largest label + 1.

    None for captioned data (text models have no classes).
    """
    from nextscale.data.token_dataset import TokenShardDataset

    classes = getattr(dataset, "classes", None)
    if classes is not None:
        return len(classes)
    if isinstance(dataset, TokenShardDataset) and not dataset.is_captioned:
        from safetensors import safe_open

        largest = -1
        for shard in dataset.shards:  # one small int64 vector per shard
            with safe_open(str(dataset.root / shard["file"]), framework="pt") as handle:
                largest = max(largest, int(handle.get_tensor("labels").max()))
        return largest + 1
    return None
