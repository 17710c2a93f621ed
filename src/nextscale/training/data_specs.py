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
where it may be meant as class folders (``nextscale.training.caption_prefix_checks``).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from nextscale.training.caption_prefix_checks import (
    note_unused_files,
    refuse_caption_file,
    refuse_labelled_data_for_text,
)

FASHION_PREFIX = "fashion-mnist"
CAPTIONS_PREFIX = "captions:"
# The run-config field a training run that carves captioned data records, and its value (the rule; another rule
# would get another value). Runs made before the carve lack the field: they resume on the whole data.
CAPTION_SPLIT_FIELD = "caption_held_out"
CAPTION_SPLIT_RULE = "hash of each image's path, 5 %, seed 0"


def carves_caption_held_out(run_dir: str | os.PathLike | None) -> bool:
    """Whether a training run in ``run_dir`` holds out a split of captioned data that has no ``val/``.

    True for a new run (no checkpoint yet) and for a run that recorded ``CAPTION_SPLIT_FIELD``; False for a run
    whose recorded config (``recorded_run_config``) lacks it: it started before captioned data was split and trained
    on all of it, and resuming it on 5 % less would change its training set (its data position would not fit).
    """
    saved = recorded_run_config(run_dir)
    return saved is None or CAPTION_SPLIT_FIELD in saved


def recorded_run_config(run_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The config a training run in ``run_dir`` is bound to, or None for a run that starts now.

    That is its config.json once it has checkpoints (or, for checkpoints copied without it, the newest checkpoint's
    recorded config); None without checkpoints (a new run, or a failed start's config.json, which binds nothing)
    and for a config.json that is no JSON object (the run-directory check refuses it, with its own message). Every
    rank reads the same config.json before training starts (rank 0 rewrites it only after a barrier), so all agree.
    """
    from nextscale.training import checkpoint as ckpt

    if run_dir is None:
        return None
    path = Path(run_dir) / "config.json"
    checkpoints = ckpt.list_checkpoints(run_dir)
    if not checkpoints:
        return None
    if not path.is_file():  # checkpoints copied without their config.json (a forked run): theirs tells
        return checkpoint_run_config(checkpoints)
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return saved if isinstance(saved, dict) else None


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
    entries that record its caption split (``caption_split_record``). (None, None, record) without ``--data``.
    Images are cropped with ``args.crop_margin`` (None: the data's default, ``training.crop_margin``)."""
    carve = carves_caption_held_out(args.run_dir)
    if not args.data:
        return None, None, caption_split_record(carve)
    if getattr(args, "text_encoder", None):  # train's text models: labels only fail at the first batch
        refuse_labelled_data_for_text(args.data)
    options = {"seed": args.seed, "bad_images": args.bad_images, "carve_captions": carve}
    options["crop_margin"] = getattr(args, "crop_margin", None)
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
    # The tokens' side is known when recorded (the manifest's "split", written since, or a ":train" source); captioned
    # training tokens record the spec alone, as captioned tokens of all the data did before it gave up a split.
    known_train = manifest.get("split") == "train" or split == "train"
    if split not in ("train", "val", "test", "all"):
        base, split = source, "train"
    if split not in ("train", "all") or not (base == data or same_place(base, data)):
        return  # held-out tokens, or tokens of other data: nothing to compare
    # "count" is images, not rows of views: a --views N folder's shards are (n, N, L), n the images it tokenized.
    images = int(manifest.get("count", 0)) + len(manifest.get("left_out", []))
    if split == "train" and images <= train_side:
        return  # the training side: disjoint from the carved split
    whole = train_side + len(held_out)
    if split == "train" and (known_train or images > whole):
        # More images than the side (or the whole data) holds now: images were removed since, whatever the tokens
        # were made of, and which of them the carve now holds out cannot be told from the tokens.
        side = "its training side" if known_train else "all of it"
        now = train_side if known_train else whole
        raise ValueError(
            f"--tokens {tokens} holds {images} images of {side}, but --data {data} now has {now} there: images were "
            "removed from it (or became unusable) since it was tokenized, so the tokens no longer match its held-out "
            "split; tokenize it again with --split train (and --split val for --eval-tokens)"
        )
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
    crop_margin: float | None = None,
):
    """(train, held-out or None) datasets of (image in [-1, 1], label or caption) for a data spec (see module
    docstring).

    With ``split`` ("train" or "test"/"val") only that split is returned, as the first element, center-cropped;
    with ``random_crops`` too, a "train" split keeps the training transform (the crops training from the images
    makes in each epoch, drawn from ``seed``). Image folders are checked for bad files first
    (``check_bad_images``) under the ``bad_images`` policy. ``carve_captions`` False reads captioned data without
    ``val/`` whole, with no held-out split (a run made before the split, ``carves_caption_held_out``).
    ``crop_margin`` is the ratio of the resized shorter side to the crop (``--crop-margin``); None keeps the data's
    default (1.125 for image folders, 1.0 for captioned data; Fashion-MNIST is resized whole, without a crop).
    """
    from nextscale.data.fashion_mnist import FashionMNIST

    if split == "all":
        options = {"seed": seed, "random_crops": random_crops, "crop_margin": crop_margin}
        return whole_source(spec, image_size, channels, bad_images, **options), None
    if spec.startswith(CAPTIONS_PREFIX):
        from nextscale.data.captions import open_caption_splits

        # No flips, and no crop margin unless chosen: captions name positions ("on the left"). DIR/train + DIR/val
        # hold both splits; other caption data gives up a held-out split carved by a hash of each image's path.
        path = spec[len(CAPTIONS_PREFIX) :]
        options = {"channels": channels, "seed": seed, "bad_images": bad_images, **_mid_reso(crop_margin)}
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
    options = {"seed": seed, "split": split, "bad_images": bad_images, "random_crops": random_crops}
    datasets = open_image_folder(spec, image_size, channels, **options, **_mid_reso(crop_margin))
    check_bad_images(datasets, bad_images)
    refuse_all_bad(datasets[0], spec)
    return datasets


def _mid_reso(crop_margin: float | None) -> dict[str, float]:
    """The datasets' ``mid_reso`` option for ``crop_margin``: none for None, which keeps the data's default."""
    return {} if crop_margin is None else {"mid_reso": crop_margin}


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


def whole_source(
    spec: str,
    image_size: int,
    channels: int,
    bad_images: str = "skip",
    seed: int = 0,
    random_crops: bool = False,
    crop_margin: float | None = None,
):
    """Every image of a folder or caption source without ``val/`` (``--split all``, ``--eval-data``), center-cropped,
    nothing held out: a folder that is itself a held-out set, or training data whose held-out set lies elsewhere.
    Data with its own splits (``train/`` + ``val/``, Fashion-MNIST) is refused: name the split.

    ``random_crops`` keeps the training transform instead (``tokenize --split all --views N``): sample ``i``'s crop
    in epoch ``e`` is drawn from ``seed``, ``e`` and ``i``, the crops a run training on all of the source makes.
    ``crop_margin``: as for ``build_datasets``."""
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
        options = {"channels": channels, "train": random_crops, "seed": seed, "bad_images": bad_images}
        return open_caption_dataset(path, image_size, **options, **_mid_reso(crop_margin))
    options = {"train": random_crops, "seed": seed if random_crops else None, "channels": channels}
    options.update(bad_images=bad_images, **_mid_reso(crop_margin))
    refuse_caption_file(spec)
    note_unused_files(folder_layout(spec).train_dir, spec)
    dataset = ImageFolderDataset(folder_layout(spec).train_dir, image_size, **options)  # DIR/train if only that
    check_bad_images((dataset,), bad_images)
    refuse_all_bad(dataset, spec)
    return dataset


def refuse_all_bad(dataset, spec: str) -> None:
    """Raise ValueError when ``check_bad_images`` left none of an image folder's files, saying why (before the
    trainer's batch check reports 0 samples); when every file was too small, name the training side."""
    from nextscale.data.image_reading import smallest_side
    from nextscale.data.images import ImageFolderDataset

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

    from nextscale.data.image_listing import IMAGE_EXTENSIONS, visible_files
    from nextscale.data.image_reading import holds_gray

    files = [path for path in visible_files(folder) if path.suffix.lower() in IMAGE_EXTENSIONS]
    files = files[:: max(1, len(files) // sample)][:sample]
    gray = set()
    for path in files:
        try:
            with warnings.catch_warnings():  # a huge file is reported once, as "huge", by the dataset's check
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:  # the header only, but for WebPs whose header cannot say gray
                    gray.add(holds_gray(image))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # bad files are counted and reported by the dataset
    if not gray:
        return None
    return 1 if all(gray) else 3


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
