"""Generate N class-balanced samples (or samples of given prompts, N tokenizer reconstructions or N edits of real
images), batch by batch.

Labels cycle through the classes (0, 1, ..., C-1, 0, 1, ...), so every class gets N / C samples
(the official FID protocol: 50 per class for 50k ImageNet samples). Prompts are sampled in their order.
Batch b uses the generator seeded with ``seed + b``: a run is reproducible, and any batch can be
regenerated alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from nextscale.data.grids import to_pil
from nextscale.pretrained import atomic_write_text
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE


def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """(N,) labels cycling through the classes."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return torch.arange(num_samples) % num_classes


def generate_batches(
    pipeline: Pipeline, num_samples: int, batch_size: int = 64, seed: int = 0, progress: bool = True, **sampling
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images (b, C, H, W) in [-1, 1], labels (b,)) until ``num_samples`` images were made.

    Args:
        pipeline: the model.
        num_samples: total number of images.
        batch_size: images per sampling call.
        seed: batch b is drawn with seed ``seed + b``.
        progress: tqdm bar.
        **sampling: cfg, top_k, top_p, temperature, smooth (see ``Pipeline.__call__``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = balanced_labels(num_samples, pipeline.num_classes)
    with tqdm(total=num_samples, unit="img", desc="sampling", disable=not progress) as bar:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            batch_labels = labels[start : start + batch_size]
            out = pipeline(class_labels=batch_labels, seed=seed + index, output_type="pt", **sampling)
            bar.update(len(batch_labels))
            yield out.images.mul(2).sub(1).cpu(), batch_labels


def _prompt_batches(
    pipeline: Pipeline, prompts: list[str], batch_size: int, seed: int, progress: bool, **sampling
) -> Iterator[torch.Tensor]:
    """The one prompt-sampling loop: yields (b, C, H, W) in [0, 1] on the CPU, batch b drawn with ``seed + b``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not prompts:
        raise ValueError("no prompts to sample")
    with tqdm(total=len(prompts), unit="img", desc="sampling", disable=not progress) as bar:
        for index, start in enumerate(range(0, len(prompts), batch_size)):
            batch = prompts[start : start + batch_size]
            out = pipeline(prompt=batch, seed=seed + index, output_type="pt", **sampling)
            bar.update(len(batch))
            yield out.images.float().cpu()


def generate_prompt_images(
    pipeline: Pipeline,
    prompts: list[str],
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    **sampling,
) -> torch.Tensor:
    """One sample per prompt from a text pipeline, in prompt order: (N, C, H, W) in [0, 1] on the CPU.

    Args:
        pipeline: a text-conditional pipeline.
        prompts: N prompts (repeat a prompt for several samples of it).
        batch_size: prompts per sampling call.
        seed: batch b is drawn with seed ``seed + b``.
        progress: tqdm bar.
        **sampling: cfg, top_k, top_p, temperature, smooth (see ``Pipeline.__call__``).
    """
    return torch.cat(list(_prompt_batches(pipeline, list(prompts), batch_size, seed, progress, **sampling)))


def generate_prompt_batches(
    pipeline: Pipeline,
    prompts: list[str],
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    **sampling,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images (b, C, H, W) in [-1, 1], prompt indices (b,) int64): one sample per prompt, batch by batch.

    The same samples as ``generate_prompt_images`` (same seeds), streamed for ``features.stream_features``:
    the indices tell observers which prompts a batch holds. Arguments as in ``generate_prompt_images``.
    """
    start = 0
    for images in _prompt_batches(pipeline, list(prompts), batch_size, seed, progress, **sampling):
        yield images.mul(2).sub(1), torch.arange(start, start + len(images))
        start += len(images)


class SampleWriter:
    """Writes each batch it is called with as ``{index:06d}_class{label}.png``, numbering on across batches
    (an observer of ``features.stream_features``: the images go to disk batch by batch, never all in memory)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """images (B, C, H, W) in [-1, 1], labels (B,)."""
        for image, label in zip(to_pil(images), labels.tolist()):
            image.save(self.folder / f"{self.count:06d}_class{label}.png")
            self.count += 1


def check_one_line_prompts(prompts: list[str], what: str = "prompt") -> None:
    """Refuse a prompt that holds a line break: ``prompts.txt`` lists one prompt per line (line i is image i's, as
    ``--prompts FILE`` reads it), and a break inside one would shift every later line off its image. The tokenizers of
    CLIP, T5 and BERT-style encoders read a line break as a space, so a space in its place keeps the prompt.

    Raises:
        ValueError: naming the first such prompt (``what`` and its 1-based number).
    """
    for number, prompt in enumerate(prompts, start=1):
        if prompt.splitlines() not in ([prompt], []):  # every break str.splitlines knows (\r, \u2028, ...)
            shown = prompt if len(prompt) <= 60 else f"{prompt[:57]}..."
            raise ValueError(
                f"{what} {number} ({shown!r}) holds a line break, but prompts.txt lists one prompt per line; write "
                "it on one line, with a space for the break"
            )


class PromptSampleWriter:
    """Writes each batch of prompt samples as ``{index:06d}.png`` (index = the prompt's position) and the prompts,
    one per line, to ``prompts.txt`` (an observer of ``features.stream_features``, like ``SampleWriter``); a prompt
    with a line break is refused (``check_one_line_prompts``) before anything is written."""

    def __init__(self, folder: str | Path, prompts: list[str]) -> None:
        check_one_line_prompts(prompts)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / "prompts.txt", "".join(f"{prompt}\n" for prompt in prompts))

    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        """images (B, C, H, W) in [-1, 1], indices (B,) of their prompts."""
        for image, index in zip(to_pil(images), indices.tolist()):
            image.save(self.folder / f"{index:06d}.png")


def save_samples(batches, folder: str | Path) -> int:
    """Write every image of (images, labels) batches as ``{index:06d}_class{label}.png``; returns the count."""
    writer = SampleWriter(folder)
    for images, labels in batches:
        writer(images, labels)
    return writer.count


def spread_indices(dataset_size: int, num_images: int) -> list[int]:
    """``num_images`` indices spread evenly through a dataset: ``i * size // num_images``, not the first N (a folder
    of class sub-folders is listed class by class, and its first 2000 of 10,000 images would hold two classes)."""
    if not 1 <= num_images <= dataset_size:
        raise ValueError(f"can take 1 to {dataset_size} images of this dataset, asked for {num_images}")
    return [index * dataset_size // num_images for index in range(num_images)]


def real_batches(
    dataset: Dataset, num_images: int, batch_size: int = 64
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images (b, C, H, W) in [-1, 1], labels (b,)) of ``num_images`` images spread through a dataset."""
    yield from DataLoader(Subset(dataset, spread_indices(len(dataset), num_images)), batch_size=batch_size)


# What an evaluated edit regenerates its region towards: the image's own class, the next class (label + 1 mod C),
# or nothing (the null class). Samples are judged against the target, "none" against the image's own class.
EDIT_TARGETS = ("own", "next", "none")


def edit_targets(labels: torch.Tensor, target: str, num_classes: int) -> torch.Tensor:
    """The class each image's edit aims at (``none``: its own class, the one it is judged against)."""
    if target not in EDIT_TARGETS:
        raise ValueError(f"target must be one of {EDIT_TARGETS}, got {target!r}")
    return (labels + 1) % num_classes if target == "next" else labels


def edit_batches(
    pipeline: Pipeline,
    dataset: Dataset,
    num_images: int,
    keep_mask: torch.Tensor,
    target: str = "own",
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    **sampling,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (edited images (b, C, H, W) in [-1, 1], target labels (b,)) of ``num_images`` real images spread
    through a dataset, each keeping its tokens where ``keep_mask`` (side, side) is True and regenerating the rest
    towards its ``target`` class (``EDIT_TARGETS``). Batch b is drawn with seed ``seed + b``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with tqdm(total=num_images, unit="img", desc="editing", disable=not progress) as bar:
        for index, (images, labels) in enumerate(real_batches(dataset, num_images, batch_size)):
            targets = edit_targets(labels.long(), target, pipeline.num_classes)
            aims = None if target == "none" else targets.tolist()
            out = pipeline.edit_images(images, keep_mask, aims, seed=seed + index, output_type="pt", **sampling)
            bar.update(len(labels))
            yield out.images.mul(2).sub(1).cpu(), targets


def edit_prompt_batches(
    pipeline,
    dataset: Dataset,
    prompts: list[str],
    keep_mask: torch.Tensor,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    **sampling,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (edited images (b, C, H, W) in [-1, 1], indices (b,)) of a text pipeline's edits of ``dataset``'s
    first ``len(prompts)`` images, image i towards ``prompts[i]``, keeping its tokens where ``keep_mask`` is True.
    Batch b is drawn with seed ``seed + b``; the indices tell observers which prompts a batch holds."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loader = DataLoader(Subset(dataset, range(len(prompts))), batch_size=batch_size)
    with tqdm(total=len(prompts), unit="img", desc="editing", disable=not progress) as bar:
        for index, (images, _) in enumerate(loader):
            start = index * batch_size
            batch = prompts[start : start + len(images)]
            out = pipeline.edit_images(
                images, keep_mask, prompts=batch, seed=seed + index, output_type="pt", **sampling
            )
            bar.update(len(images))
            yield out.images.mul(2).sub(1).float().cpu(), torch.arange(start, start + len(images))


def reconstruct_batches(
    tokenizer: MultiScaleVQVAE, dataset: Dataset, num_images: int, batch_size: int = 64, progress: bool = True
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (reconstructions (b, C, H, W) in [-1, 1], labels (b,)) of ``num_images`` images spread evenly
    through a dataset.

    Each image goes through all K scales of the tokenizer (encode to token maps, decode the full f̂): the
    FID of these against the real set is the reconstruction FID (rFID), the floor a transformer on this
    tokenizer can reach. The images are ``dataset[i * len(dataset) // num_images]`` for i < num_images (all of
    them when the counts are equal), not the first ``num_images``: a folder of class sub-folders is listed
    class by class, and its first 2000 of 10,000 images would hold two classes of ten, so the FID against
    the whole set would measure the missing classes rather than the tokenizer.
    """
    device = next(tokenizer.parameters()).device
    tokenizer.eval()
    with tqdm(total=num_images, unit="img", desc="reconstructing", disable=not progress) as bar:
        for images, labels in real_batches(dataset, num_images, batch_size):
            bar.update(len(labels))
            with torch.inference_mode():  # around the call only: across the yield it stays on in the caller's code
                reconstructions = tokenizer.reconstruct(images.to(device)).float().cpu()
            yield reconstructions, labels
