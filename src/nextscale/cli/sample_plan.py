"""What a ``sample`` run makes: the condition of every image (``Plan``), the classes --class names, the
--text-features it reads, and the seed of each batch (which depends only on the seed and the batch's index)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nextscale.sampling.pipeline import Pipeline


def read_text_features(path: Path) -> dict:
    """The pipeline call's precomputed-feature arguments from a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nextscale.sampling.pipeline import TEXT_INPUTS

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (--text-features expects a safetensors file)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
    unknown = sorted(set(tensors) - set(TEXT_INPUTS))
    if unknown or "prompt_embeds" not in tensors:
        raise ValueError(
            f"{path} must hold prompt_embeds and pooled_prompt_embeds (optionally prompt_attention_mask and the "
            f"negative_* three); unexpected {unknown}"
        )
    return tensors


def batch_seed(seed: int | None, batch_idx: int) -> int | None:
    """Batch 0 uses the seed itself (the official draws); batch b > 0 a seed derived from (seed, b), so that
    each batch is reproducible on its own and a resumed run makes the same images."""
    import numpy as np

    if seed is None or batch_idx == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**64, batch_idx]).generate_state(1, np.uint64)[0] >> 1)


class Plan:
    """Which condition each image gets: ``inputs(start, end)`` are the pipeline arguments of images
    start..end-1, ``labels[i]`` the class of image i when known before sampling, ``prompts`` one per image."""

    def __init__(self, args: argparse.Namespace, pipe, features: dict) -> None:
        self.labels = self.prompts = self.features = self.negative = None
        num = args.num
        if args.classes is not None:
            self.labels = [label for label in resolve_classes(pipe, args.classes) for _ in range(num)]
            self.count = len(self.labels)
        elif args.prompt is not None:
            self.prompts = [text for text in args.prompt for _ in range(num)]
            self.count = len(self.prompts)
            negative = args.negative_prompt
            if negative is not None and len(negative) not in (1, len(args.prompt)):
                raise ValueError(f"give 1 or {len(args.prompt)} --negative-prompt values, got {len(negative)}")
            if negative is not None and len(negative) > 1:
                negative = [text for text in negative for _ in range(num)]
            self.negative = negative
        elif features:
            # conditional rows repeat per image, like prompts; a single negative row serves every image
            self.count = features["prompt_embeds"].shape[0] * num
            self.features = {
                key: value if key.startswith("negative") and value.shape[0] == 1 else value.repeat_interleave(num, 0)
                for key, value in features.items()
            }
        else:
            self.count = num

    def inputs(self, start: int, end: int) -> dict:
        if self.labels is not None:
            return {"class_labels": self.labels[start:end]}
        if self.prompts is not None:
            negative = self.negative if self.negative is None or len(self.negative) == 1 else self.negative[start:end]
            given = {} if negative is None else {"negative_prompt": negative}
            return {"prompt": self.prompts[start:end], **given}
        if self.features is not None:
            return {
                key: value if value.shape[0] != self.count else value[start:end] for key, value in self.features.items()
            }
        return {"class_labels": None, "num_images_per_prompt": end - start}  # labels drawn by the generator


def names_every_class(classes: list | None) -> bool:
    """Whether --class says ``all``."""
    return classes is not None and any(str(value).lower() == "all" for value in classes)


def resolve_classes(pipe: Pipeline, classes: list) -> list[int]:
    """--class values as ids; ``all`` is every class in order (the FID sets: N images of each class)."""
    if names_every_class(classes):
        if len(classes) > 1:
            raise ValueError("--class all already names every class; give it alone")
        return list(range(pipe.num_classes))
    ids = []
    for index, label in enumerate(classes):
        try:
            ids.extend(pipe.class_ids([label]))
        except ValueError as err:
            joined = pipe.name_of_words(classes[index:])  # `--class red apples` unquoted: two names made of one
            if joined is None:
                raise
            raise ValueError(f'{err} (quote a name with spaces: --class "{joined}")') from None
    return ids
