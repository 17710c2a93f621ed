"""The reference side of `nextscale evaluate`: where a --reference reads, the key its cached features are stored
under, and its batches (an .npz in OpenAI's evaluation format streams its own)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from nextscale.cli.evaluate import CAPTIONS_PREFIX, FEATURE_BATCH, MIN_SET_SIZE


def refuse_split_folder(spec: str, path: Path, prefix: str = "") -> None:
    """Refuse a ``--reference`` folder laid out as ``train/`` plus a held-out split (``val/``, ``test/``): read whole,
    it mixes the training images (sorted first) into the reference, or, as class folders, makes each split a class.
    The message names both folders, prefixed as given (``captions:``)."""
    from nextscale.data.folders import HELD_OUT_NAMES

    held_out = next((path / name for name in HELD_OUT_NAMES if (path / name).is_dir()), None)
    if (path / "train").is_dir() and held_out is not None:
        raise ValueError(
            f"--reference {spec} holds a train/ and a {held_out.name}/ split; pass the images to compare with: "
            f"--reference {prefix}{held_out} (held out) or {prefix}{path / 'train'}"
        )


def reference_location(spec: str) -> str:
    """``--reference`` as the absolute place it reads, for the reference cache's key.

    The spec as typed is not enough: ``--reference val`` names another folder from another working directory,
    and plain ``fashion-mnist`` follows $NEXTSCALE_FASHION_MNIST. Example: ``fashion-mnist`` ->
    ``fashion-mnist:/usr/share/datasets/fashion-mnist``; ``captions:data/test`` -> ``captions:/home/me/data/test``.
    """
    if spec.startswith("fashion-mnist"):
        from nextscale.data.fashion_mnist import default_root

        root = spec.split(":", 1)[1] if ":" in spec else default_root()
        return f"fashion-mnist:{Path(root).resolve()}"
    if spec.startswith(CAPTIONS_PREFIX):
        return f"{CAPTIONS_PREFIX}{Path(spec.removeprefix(CAPTIONS_PREFIX)).resolve()}"
    return str(Path(spec).resolve())


def reference_key(spec: str, reference, size: int, channels: int, network: str) -> dict:
    """What the reference cache's features are of: the place, count, image size and channels, the feature
    network and, for a folder, captioned images or an .npz, a digest of its files' names, sizes and modification
    times (a folder whose images were replaced by as many others must not reuse the old features; Fashion-MNIST's
    are fixed). ``reference`` may be a ``Subset`` (a text model's first --num captioned images).

    ``channels`` is how the reference is read (the model's; 3 for ``--samples``), recorded where that can change
    the images: a folder of colour images read as gray. Fashion-MNIST is gray (read as RGB, the gray channel three
    times, as the feature networks see gray anyway) and an .npz is RGB: model and ``--samples`` runs share its cache.
    """
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.sample_sets import SampleSet

    if isinstance(reference, FashionMNIST):
        channels = 1
    elif isinstance(reference, SampleSet):
        channels = 3
    key = dict(reference=reference_location(spec), split="test", count=len(reference), size=size, channels=channels)
    files = reference_files(reference)
    if files:
        digest = hashlib.sha256()
        for path in files:
            stat = Path(path).stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        key["files"] = digest.hexdigest()[:16]
    return {**key, "features": network}


def reference_files(reference) -> list[Path]:
    """The files a reference's images are read from, in order: an .npz (or a sample folder's images), a folder's
    images, a caption source's images (each ``.tar`` shard once); none for Fashion-MNIST, whose files are fixed."""
    import torch

    from nextscale.data.caption_base import CaptionDataset
    from nextscale.data.images import ImageFolderDataset
    from nextscale.data.sample_sets import SampleSet

    indices = None
    if isinstance(reference, torch.utils.data.Subset):
        reference, indices = reference.dataset, reference.indices
    if isinstance(reference, SampleSet):
        return [reference.path] if reference.files is None else reference.files
    if isinstance(reference, ImageFolderDataset):
        paths = [path for path, _ in reference.samples]
    elif isinstance(reference, CaptionDataset):
        sources = (sample.source for sample in reference.samples)
        paths = [source if isinstance(source, Path) else source.shard for source in sources]  # TarMember: its shard
    else:
        return []
    if indices is not None:
        paths = [paths[index] for index in indices]
    return list(dict.fromkeys(paths))  # a shard holds many images; its size and time cover all of them


def open_npz_reference(spec: str, size: int, features: str):
    """``--reference IMAGES.npz``: real images in OpenAI's evaluation format (arr_0 uint8 (N, H, W, 3), e.g. the
    ADM reference batch VIRTUAL_imagenet256_labeled.npz that published ImageNet FIDs are measured against), read
    as they are: at the samples' size, for the standard Inception features."""
    from nextscale.data.sample_sets import SampleSet

    if features != "inception":
        raise ValueError(
            f"--reference {spec}: an .npz reference is for the standard Inception features; drop --features {features}"
        )
    reference = SampleSet(spec)
    if reference.side != size:
        raise ValueError(
            f"--reference {spec} holds {reference.side} px images, the samples are {size} px: give a reference of "
            "the samples' size (an .npz is read as it is, not resized)"
        )
    if len(reference) < MIN_SET_SIZE:
        raise ValueError(f"--reference {spec} holds {len(reference)} image(s); give at least {MIN_SET_SIZE}")
    return reference


def reference_batches(reference):
    """The (images, labels) batches of a reference: an .npz (``SampleSet``) streams its own, a dataset loads."""
    import torch

    from nextscale.data.sample_sets import SampleSet

    if isinstance(reference, SampleSet):
        return reference.batches(FEATURE_BATCH)
    return torch.utils.data.DataLoader(reference, batch_size=FEATURE_BATCH, shuffle=False)
