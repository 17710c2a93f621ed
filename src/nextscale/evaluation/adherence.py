"""Prompt adherence of text-to-image samples on Fashion-MNIST scenes (GenEval-style position and presence).

A prompt names up to four items by quadrant ("a sneaker in the top left and a bag in the bottom right");
``parse_caption`` turns it into a layout. Each generated 64x64 image is cut into its four 32x32 quadrants
(places 0..3 = top left, top right, bottom left, bottom right, as in ``nextscale.data.scenes``) and judged:

- a quadrant is **empty** iff its mean pixel value is below ``EMPTY_THRESHOLD`` = 5/255 (images in [0, 1]).
  Real scenes have black (0) empty quadrants. Over the 70,000 Fashion-MNIST images padded to 32x32 the
  dimmest class, sandal, averages 26.7/255 over its quadrant; 1% of sandals fall below 9/255 and the single
  dimmest image of all (a train sandal) reaches 3.8/255, the only one below the threshold (the dimmest test
  image: 6.0/255; the dimmest item of the bundled test scenes: a sandal at 10.0/255);
- a named item is **recognised** iff its quadrant is not empty and the classifier's argmax on the quadrant
  equals the named class; an unnamed quadrant is right iff it is empty.

Scores: item accuracy (named items recognised in their quadrant), empty accuracy (unnamed quadrants empty)
and scene accuracy (all four quadrants right), overall and separately for scenes whose layout holds a
held-out pairing ("unseen", ``scenes.held_out_pairings``) and the others ("seen").

The judge is injected: any callable from quadrants (B, 1|3, 32, 32) in [-1, 1] to class logits (B, 10), by
default the bundled Fashion-MNIST classifier (``classifier.load_bundled_classifier``). It is not perfect: on
real scenes (5000 of ``make-scenes --split test --seed 0``) it recognises 91.8% of the items and gets 79.2% of
the scenes wholly right (empty quadrants: 100%); on 1-2 item scenes, like the default evaluation prompts,
91.3% of items and 85.2% of scenes. Those are the ceilings a model can reach by this measure; ``nextscale
evaluate --reference`` reports the judge's scores on the reference scenes beside the model's.

Evaluation prompts (``evaluation_layouts``): a fixed, seeded list, alternately seen and unseen layouts (as
many unseen as seen, where ``max_items`` >= 2 allows a pairing), drawn the way ``scenes.SceneDataset`` draws
held-out scenes; layout i depends only on (seed, i), so a longer list starts with a shorter one.

References: Ghosh et al. 2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image
Alignment" (position and presence tasks judged by a detector); Xiao et al. 2017, "Fashion-MNIST".
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nextscale.data.scenes import (
    CANVAS_SIZE,
    HELD_OUT_MULTIPLIER,
    ITEM_NAMES,
    PLACE_PAIRS,
    PLACES,
    QUADRANT_SIZE,
    Layout,
    caption_for,
    check_layout,
    held_out_pairings,
    parse_caption,
    random_seen_layout,
)

if TYPE_CHECKING:  # the metrics need no model code; only ``sweep_cfg`` samples
    from nextscale.sampling.pipeline import Pipeline

# Mean pixel value (images in [0, 1]) under which a quadrant counts as empty; see the module docstring.
EMPTY_THRESHOLD = 5 / 255
RANGE_SLACK = 1e-3  # how far outside [0, 1] an image may stray (float error) before it is refused as mis-scaled
PROMPT_SEED = 0  # the evaluation prompts are one fixed list, the same for every model and sampling seed

QuadrantClassifier = Callable[[torch.Tensor], torch.Tensor]  # (B, 1|3, 32, 32) in [-1, 1] -> logits (B, 10)

# What each score of a report measures, written beside the scores (a report read alone must say what they are).
SCORE_DEFINITIONS = {
    "item_accuracy": "share of the items a prompt names that the judge recognises in their quadrant (the quadrant is "
    "not empty and the classifier's argmax is the named class)",
    "empty_accuracy": "share of the quadrants a prompt leaves unnamed that are empty (mean pixel value below "
    "empty_threshold)",
    "scene_accuracy": "share of scenes with all four quadrants right (every named item recognised, every other "
    "quadrant empty)",
    "seen, unseen": "the scenes whose layout holds no held-out pairing (item a at place p with item b at place q), "
    "and those that hold one; overall is both",
}


# ------------------------------------------------------------------------------------------------- judging
def split_quadrants(images: torch.Tensor) -> torch.Tensor:
    """Cut 64x64 scenes into their quadrants, in place order.

    Args:
        images: (B, C, 64, 64), C = 1 or 3.

    Returns:
        (B, 4, C, 32, 32): quadrant ``2 * row + col`` (top left, top right, bottom left, bottom right).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[-2:] != (CANVAS_SIZE, CANVAS_SIZE):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(
            f"prompt adherence reads {CANVAS_SIZE}x{CANVAS_SIZE} scenes of four {QUADRANT_SIZE}x{QUADRANT_SIZE} "
            f"quadrants, shaped (B, 1|3, {CANVAS_SIZE}, {CANVAS_SIZE}); got {shape}"
        )
    batch, channels = images.shape[:2]
    grid = images.reshape(batch, channels, 2, QUADRANT_SIZE, 2, QUADRANT_SIZE)  # (B, C, row, y, col, x)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, len(PLACES), channels, QUADRANT_SIZE, QUADRANT_SIZE)


@dataclasses.dataclass(frozen=True)
class QuadrantVerdicts:
    """What the judge saw in each quadrant of B scenes.

    Attributes:
        brightness: (B, 4) float mean pixel value in [0, 1].
        empty: (B, 4) bool, brightness below the threshold.
        predicted: (B, 4) int64 classifier argmax of the named, non-empty quadrants; -1 elsewhere (not asked).
        correct: (B, 4) bool, named quadrant recognised or unnamed quadrant empty.
        named: (B, 4) bool, the layout names an item there.
        unseen: (B,) bool, the layout holds a held-out pairing.
    """

    brightness: torch.Tensor
    empty: torch.Tensor
    predicted: torch.Tensor
    correct: torch.Tensor
    named: torch.Tensor
    unseen: torch.Tensor


def judge_quadrants(
    images: torch.Tensor,
    layouts: Sequence[Layout],
    classifier: QuadrantClassifier | None = None,
    empty_threshold: float = EMPTY_THRESHOLD,
) -> QuadrantVerdicts:
    """Judge every quadrant of generated scenes against the layouts their prompts name.

    The images are judged as the 8-bit PNG files they become (``--save-samples``, ``sample --out-dir``): rounded to
    the 256 pixel values first, as ``features.quantize_8bit`` rounds them for the feature networks, so the verdicts
    on a model's tensors equal those on its saved files. Example: 0.5 -> pixel round(127.5) = 128 -> 0.50196.

    Args:
        images: (B, 1|3, 64, 64) float in [0, 1] (the pipeline's ``output_type="pt"``); integer pixels or values
            outside [0, 1] (a [-1, 1] tensor) raise ValueError rather than being clamped into a wrong score.
        layouts: B layouts (``parse_caption`` of each prompt): class id or None per place.
        classifier: quadrants (b, 1|3, 32, 32) in [-1, 1] -> logits (b, 10); None loads the bundled one (at
            every call: a caller scoring batch after batch passes one in, as ``AdherenceTally`` does).
        empty_threshold: mean pixel value in [0, 1] below which a quadrant is empty.

    Returns:
        ``QuadrantVerdicts`` on the CPU.
    """
    quadrants = split_quadrants(images).detach()  # (B, 4, C, 32, 32)
    # Clamping would hide a wrong scale: uint8 pixels would all saturate to 1 and a [-1, 1] tensor would lose the
    # darker half of every item, and either would be scored without a word.
    if not quadrants.is_floating_point():
        raise ValueError(
            f"prompt adherence reads float images in [0, 1], got {images.dtype}; divide 8-bit pixels by 255"
        )
    low, high = quadrants.min().item(), quadrants.max().item()
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        raise ValueError(
            f"prompt adherence reads images in [0, 1], got values in [{low:.3g}, {high:.3g}]; a tensor x in [-1, 1] "
            "is (x + 1) / 2"
        )
    # quantize_8bit's rounding on the [0, 1] scale: for x in [-1, 1], (x + 1) / 2 * 255 is the (x + 1) * 127.5 that
    # ``data.grids.to_pil`` rounds, bit for bit (halving is exact; a trip back to [-1, 1] is not)
    quadrants = quadrants.float().cpu().clamp(0.0, 1.0).mul(255).round().div(255)
    if len(layouts) != quadrants.shape[0]:
        raise ValueError(f"need one layout per image: {quadrants.shape[0]} images, {len(layouts)} layouts")
    if not 0 < empty_threshold < 1:
        raise ValueError(f"empty_threshold is a mean pixel value in (0, 1), got {empty_threshold}")
    layouts = [check_layout(layout) for layout in layouts]
    ids = [[-1 if item is None else item for item in layout] for layout in layouts]
    named_ids = torch.tensor(ids, dtype=torch.long).view(-1, len(PLACES))  # (B, 4) class ids, -1: nothing named
    named = named_ids >= 0  # (B, 4)
    brightness = quadrants.mean(dim=(2, 3, 4))  # (B, 4)
    empty = brightness < empty_threshold
    predicted = torch.full_like(named_ids, -1)
    ask = named & ~empty
    if ask.any():
        if classifier is None:
            from nextscale.evaluation.classifier import load_bundled_classifier

            classifier = load_bundled_classifier().logits
        with torch.inference_mode():
            logits = classifier(quadrants[ask].mul(2).sub(1))  # (b, 10), b named non-empty quadrants
        if logits.ndim != 2 or logits.shape[0] != int(ask.sum()):
            raise ValueError(
                f"the classifier returned {tuple(logits.shape)} for {int(ask.sum())} quadrants; want (b, V)"
            )
        predicted[ask] = logits.argmax(dim=1).cpu()
    correct = torch.where(named, predicted == named_ids, empty)
    unseen = torch.tensor([bool(held_out_pairings(layout)) for layout in layouts], dtype=torch.bool)
    return QuadrantVerdicts(brightness, empty, predicted, correct, named, unseen)


# ------------------------------------------------------------------------------------------------- scores
def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


@dataclasses.dataclass(frozen=True)
class AdherenceScores:
    """Counts of one group of scenes; the accuracies are None when the group has nothing to count."""

    scenes: int = 0
    scenes_correct: int = 0
    items: int = 0
    items_correct: int = 0
    empty: int = 0
    empty_correct: int = 0

    @property
    def item_accuracy(self) -> float | None:
        return _share(self.items_correct, self.items)

    @property
    def empty_accuracy(self) -> float | None:
        return _share(self.empty_correct, self.empty)

    @property
    def scene_accuracy(self) -> float | None:
        return _share(self.scenes_correct, self.scenes)

    def __add__(self, other: AdherenceScores) -> AdherenceScores:
        return AdherenceScores(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def as_dict(self) -> dict[str, float | int | None]:
        accuracies = dict(
            item_accuracy=self.item_accuracy, empty_accuracy=self.empty_accuracy, scene_accuracy=self.scene_accuracy
        )
        return {**accuracies, **dataclasses.asdict(self)}

    @classmethod
    def tally(cls, verdicts: QuadrantVerdicts, rows: torch.Tensor) -> AdherenceScores:
        """Counts over the scenes selected by the bool mask ``rows`` (B,)."""
        named, correct = verdicts.named[rows], verdicts.correct[rows]  # (b, 4)
        return cls(
            scenes=int(rows.sum()),
            scenes_correct=int(correct.all(dim=1).sum()),
            items=int(named.sum()),
            items_correct=int((correct & named).sum()),
            empty=int((~named).sum()),
            empty_correct=int((correct & ~named).sum()),
        )


@dataclasses.dataclass(frozen=True)
class AdherenceReport:
    """Scores over all scenes and split by seen / unseen pairings (``overall == seen + unseen``)."""

    overall: AdherenceScores
    seen: AdherenceScores
    unseen: AdherenceScores

    @classmethod
    def from_verdicts(cls, verdicts: QuadrantVerdicts) -> AdherenceReport:
        everything = torch.ones_like(verdicts.unseen)
        return cls(
            AdherenceScores.tally(verdicts, everything),
            AdherenceScores.tally(verdicts, ~verdicts.unseen),
            AdherenceScores.tally(verdicts, verdicts.unseen),
        )

    def __add__(self, other: AdherenceReport) -> AdherenceReport:
        return AdherenceReport(self.overall + other.overall, self.seen + other.seen, self.unseen + other.unseen)

    def as_dict(self) -> dict[str, dict]:
        return {"overall": self.overall.as_dict(), "seen": self.seen.as_dict(), "unseen": self.unseen.as_dict()}


def score_adherence(
    images: torch.Tensor,
    layouts: Sequence[Layout],
    classifier: QuadrantClassifier | None = None,
    empty_threshold: float = EMPTY_THRESHOLD,
) -> AdherenceReport:
    """Item, empty-quadrant and whole-scene accuracy of scenes against their layouts.

    Args:
        images: (B, 1|3, 64, 64) in [0, 1].
        layouts: B layouts, one per image.
        classifier: quadrants (b, 1|3, 32, 32) in [-1, 1] -> logits (b, 10); None loads the bundled one (at
            every call: a caller scoring batch after batch passes one in, as ``AdherenceTally`` does).
        empty_threshold: mean pixel value in [0, 1] below which a quadrant is empty.

    Example:
        >>> report = score_adherence(out.images, [parse_caption(p) for p in out.prompts])
        >>> report.unseen.item_accuracy  # share of named items recognised in scenes with a held-out pairing
    """
    return AdherenceReport.from_verdicts(judge_quadrants(images, layouts, classifier, empty_threshold))


def quadrant_features(extractor: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scene feature extractor from a 32x32 one: the four quadrants' features, concatenated in place order.

    With the bundled classifier's ``features`` this gives a cheap (B, 4 * 64) embedding for a Fréchet distance
    between 64x64 scenes that keeps where each item is (Inception features are the standard ones).
    """

    def features(images: torch.Tensor) -> torch.Tensor:
        quadrants = split_quadrants(images)  # (B, 4, C, 32, 32)
        embedded = extractor(quadrants.flatten(0, 1))  # (4B, D)
        return embedded.reshape(quadrants.shape[0], -1)  # (B, 4D)

    return features


# ------------------------------------------------------------------------------------------------- prompts
def _seen_layout(max_items: int, generator: np.random.Generator) -> Layout:
    return tuple(random_seen_layout(int(generator.integers(1, max_items + 1)), generator))


def _unseen_layout(max_items: int, generator: np.random.Generator) -> Layout:
    pair_index = int(generator.integers(len(PLACE_PAIRS)))
    (p, q), item_a = PLACE_PAIRS[pair_index], int(generator.integers(len(ITEM_NAMES)))
    layout: list[int | None] = [None] * len(PLACES)
    layout[p], layout[q] = item_a, (HELD_OUT_MULTIPLIER * item_a + pair_index) % len(ITEM_NAMES)
    free = [place for place in range(len(PLACES)) if layout[place] is None]
    extra = int(generator.integers(0, max_items - 1))  # 2..max_items items in all
    for place in np.sort(generator.choice(free, size=extra, replace=False)).tolist():
        layout[place] = int(generator.integers(len(ITEM_NAMES)))
    return tuple(layout)


def evaluation_layouts(count: int, max_items: int = 2, seed: int = PROMPT_SEED) -> list[Layout]:
    """A fixed list of layouts to prompt a scene model with: even indices seen, odd indices unseen.

    Layout i is drawn from ``numpy.random.default_rng([seed, i])``. Seen layouts: 1..max_items items
    (uniform), places uniform without replacement, each item uniform over those forming no held-out pairing
    with the items before it. Unseen layouts (only when max_items >= 2; else every layout is seen): one
    held-out pairing drawn uniformly (place pair, then the first item; the rule gives the second), plus
    0..max_items-2 further items anywhere. Layouts may repeat (there are only 40 one-item layouts).

    Args:
        count: number of layouts.
        max_items: most items per layout, 1..4.
        seed: the list's seed.
    """
    if count < 1:
        raise ValueError(f"the number of prompts must be at least 1, got {count}")
    if not 1 <= max_items <= len(PLACES):
        raise ValueError(f"max_items must be in 1..{len(PLACES)}, got {max_items}")
    layouts = []
    for index in range(count):
        generator = np.random.default_rng([seed, index])
        unseen = max_items >= 2 and index % 2 == 1
        layouts.append(_unseen_layout(max_items, generator) if unseen else _seen_layout(max_items, generator))
    return layouts


def evaluation_prompts(count: int, max_items: int = 2, seed: int = PROMPT_SEED) -> list[str]:
    """Canonical captions (``caption_for``) of ``evaluation_layouts(count, max_items, seed)``."""
    return [caption_for(layout) for layout in evaluation_layouts(count, max_items, seed)]


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """Prompts from a UTF-8 text file, one per line; blank lines are skipped (a byte-order mark is not prompt text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Windows editors start UTF-8 files with a BOM
    except UnicodeDecodeError as err:
        raise ValueError(
            f"prompt file {path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from err
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts; write one prompt per line")
    return prompts


def prompt_layouts(prompts: Sequence[str]) -> list[Layout]:
    """``parse_caption`` of every prompt; the error names the first prompt that is not a scene caption."""
    layouts = []
    for number, prompt in enumerate(prompts, start=1):
        try:
            layouts.append(parse_caption(prompt))
        except ValueError as err:
            raise ValueError(f"prompt {number} cannot be judged: {err}") from err
    return layouts


def adherence_problem(image_size: int, prompts: Sequence[str]) -> str | None:
    """Why this judge cannot score samples of ``prompts`` from a model making ``image_size`` px images; None if it can.

    The judge knows only the project's Fashion-MNIST scenes: 64x64 canvases whose captions ``parse_caption`` reads.
    Anyone else's text model (another size, other captions) gets a reason instead, and is measured by FID.
    """
    if image_size != CANVAS_SIZE:
        return (
            f"prompt adherence judges {CANVAS_SIZE}x{CANVAS_SIZE} Fashion-MNIST scenes; this model makes "
            f"{image_size}x{image_size} images"
        )
    try:
        prompt_layouts(prompts)
    except ValueError as err:
        return f"prompt adherence judges Fashion-MNIST scene captions; {err}"
    return None


class AdherenceTally:
    """Observer of generated batches (``features.stream_features``): adds up the adherence of each batch, so the
    images need not stay in memory.

    Args:
        layouts: the layout of every prompt; a batch names its prompts by index.
        classifier, empty_threshold: see ``score_adherence``; a None classifier is loaded once, at the first batch
            (not by ``score_adherence`` at every batch).
    """

    def __init__(
        self,
        layouts: Sequence[Layout],
        classifier: QuadrantClassifier | None = None,
        empty_threshold: float = EMPTY_THRESHOLD,
    ) -> None:
        self.layouts = list(layouts)
        self.classifier = classifier
        self.empty_threshold = empty_threshold
        self.report: AdherenceReport | None = None

    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        """images (B, C, 64, 64) in [-1, 1], indices (B,) of their prompts."""
        if self.classifier is None:
            from nextscale.evaluation.classifier import load_bundled_classifier

            self.classifier = load_bundled_classifier().logits
        layouts = [self.layouts[index] for index in indices.tolist()]
        scores = score_adherence(images.add(1).div(2), layouts, self.classifier, self.empty_threshold)
        self.report = scores if self.report is None else self.report + scores


# ------------------------------------------------------------------------------------------------ sampling
@dataclasses.dataclass(frozen=True)
class CfgResult:
    """One guidance scale of a sweep: the samples (N, C, H, W) in [0, 1], in prompt order, and their scores."""

    cfg: float
    images: torch.Tensor
    adherence: AdherenceReport


def sweep_cfg(
    pipeline: Pipeline,
    prompts: Sequence[str],
    cfgs: Sequence[float],
    classifier: QuadrantClassifier | None = None,
    batch_size: int = 64,
    seed: int = 0,
    empty_threshold: float = EMPTY_THRESHOLD,
    progress: bool = True,
    **sampling,
) -> Iterator[CfgResult]:
    """Sample every prompt at each guidance scale and score the samples, one cfg at a time.

    Every cfg uses the same seeds (batch b: ``seed + b``), so the rows differ by guidance alone.

    Args:
        pipeline: a text pipeline making 64x64 scenes.
        prompts: scene captions (``parse_caption`` must read them).
        cfgs: guidance scales.
        classifier: the judge (None: the bundled classifier, loaded once).
        batch_size, seed, progress, **sampling: see ``generate.generate_prompt_images``.

    Example:
        >>> scores = {r.cfg: r.adherence for r in sweep_cfg(pipe, evaluation_prompts(200), [1.0, 3.0, 5.0])}
    """
    from nextscale.evaluation.generate import generate_prompt_images

    layouts = prompt_layouts(prompts)
    if not cfgs:
        raise ValueError("give at least one cfg value")
    if classifier is None:
        from nextscale.evaluation.classifier import load_bundled_classifier

        classifier = load_bundled_classifier(pipeline.device).logits
    for cfg in cfgs:
        images = generate_prompt_images(
            pipeline, list(prompts), batch_size=batch_size, seed=seed, progress=progress, cfg=cfg, **sampling
        )
        yield CfgResult(float(cfg), images, score_adherence(images, layouts, classifier, empty_threshold))
