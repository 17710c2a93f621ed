"""Fashion-MNIST scenes: 64x64 canvases of one to four clothes, captioned with where each item is.

Canvas: 64x64 grayscale, four 32x32 quadrants, places 0..3 = top left, top right, bottom left, bottom right.
A quadrant is empty (black: 0 in uint8, -1 in [-1, 1]) or holds one Fashion-MNIST item: the 28x28 image
padded by 2 px of background on every side, the exact 32x32 input of the bundled class model
(``fashion_mnist.prepare_images(image, 32)``), so that model can judge each quadrant of a generated scene.

Layout: a tuple of 4 entries, one per place in that order, each a class id 0..9 or None; 1 to 4 items.

Canonical caption: one clause "a/an ITEM in the PLACE" per item, in place order, joined with " and ":

    (7, None, None, 8)    -> "a sneaker in the top left and a bag in the bottom right"
    (None, 9, None, None) -> "an ankle boot in the top right"

``caption_for`` writes it and ``parse_caption`` reads it back. With probability ``1 - canonical_probability``
(default 0) a scene gets a paraphrase instead: the same clauses in a shuffled order, "in the" or "at the",
joined by ", " with a final " and " ("a bag at the bottom right, a coat at the top left and ...");
``parse_caption`` reads those too.

Held-out pairings (the compositional split). A pairing is item a at place p together with item b at place q,
p < q. Of the 600 pairings (6 place pairs x 10 x 10 items), exactly 60 (10%) are held out::

    b == (3 * a + k) % 10,   k = index of (p, q) in PLACE_PAIRS = ((0,1), (0,2), (0,3), (1,2), (1,3), (2,3))

3 is invertible mod 10, so for each place pair the rule pairs every item with exactly one partner: every
(item, place) is in 3 held-out pairings (one per other place) and 27 seen ones, and whatever items a scene
already holds, at least 7 of the 10 items may join them without forming a held-out pairing. A scene is
*unseen* when its layout contains at least one held-out pairing.

Sampling of scene ``i`` (draws in this order from ``numpy.random.default_rng([seed, SPLIT_CODES[split],
i])``, so scene ``i`` depends on nothing else and a resumed or longer build agrees with a shorter one):

1. split "test" only: with probability ``unseen_fraction`` (default 0.5) the scene is built around one
   held-out pairing drawn uniformly (place pair, then item a; b follows from the rule), and has 2 to 4 items
   (count weights renormalised over 2..4); the other items go anywhere and may be anything.
2. otherwise (every "train" scene): the number of items from ``item_count_weights`` (default uniform over
   1, 2, 3, 4), the places uniformly without replacement, then the items in place order, each uniform over
   the classes that form no held-out pairing with the items already placed. Train scenes are never unseen.
3. for each item, a uniform image of that class from the split's Fashion-MNIST images ("train" scenes use
   the train split, held-out "test" scenes the test split, so no item image is shared).
4. the caption: canonical with probability ``canonical_probability``, else a paraphrase.

Folder written by ``build_scenes`` (read it back with ``captions.CaptionManifestDataset``)::

    out/images/00000.png ...   64x64 grayscale PNGs
    out/captions.jsonl         {"image": "images/00000.png", "caption": "..."} per scene
    out/scenes.json            settings, rules, and per scene: layout, sources, unseen, captions

References: Xiao et al. 2017, "Fashion-MNIST"; Ma et al. 2024, "STAR: Scale-wise Text-to-image generation via
Auto-Regressive representations" (text conditioning this dataset exercises).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from nextscale.data.fashion_mnist import NATIVE_SIZE, load_fashion_mnist, prepare_images
from nextscale.pretrained import atomic_write_text

logger = logging.getLogger(__name__)

ITEM_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
PLACES = ("top left", "top right", "bottom left", "bottom right")
CANVAS_SIZE = 64
QUADRANT_SIZE = CANVAS_SIZE // 2
PADDING = (QUADRANT_SIZE - NATIVE_SIZE) // 2  # 2 px each side: prepare_images(image, 32) does the same
PLACE_PAIRS = tuple(itertools.combinations(range(len(PLACES)), 2))
HELD_OUT_MULTIPLIER = 3  # coprime to 10: the rule is a bijection between items for every place pair
SPLIT_CODES = {"train": 0, "test": 1}
INDEX_FORMAT = "nextscale-fashion-mnist-scenes"
INDEX_VERSION = 1
HELD_OUT_RULE = (
    "item b at place q is held out with item a at place p < q when b == (3 * a + k) % 10, k = index of (p, q)"
)

Layout = tuple[int | None, int | None, int | None, int | None]
Pairing = tuple[tuple[int, int], tuple[int, int]]  # ((item a, place p), (item b, place q)), p < q

HELD_OUT_PAIRINGS: frozenset[Pairing] = frozenset(
    ((a, p), ((HELD_OUT_MULTIPLIER * a + k) % len(ITEM_NAMES), q))
    for k, (p, q) in enumerate(PLACE_PAIRS)
    for a in range(len(ITEM_NAMES))
)


def check_layout(layout: Sequence[int | None]) -> Layout:
    """Return ``layout`` as a tuple of 4 class ids or None, raising ValueError if it is not one."""
    layout = tuple(layout)
    if len(layout) != len(PLACES):
        raise ValueError(f"a layout has {len(PLACES)} entries (one per place {PLACES}), got {len(layout)}")
    for item in layout:
        is_class_id = isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < len(ITEM_NAMES)
        if item is not None and not is_class_id:
            raise ValueError(f"layout entries are class ids 0..{len(ITEM_NAMES) - 1} or None, got {item!r}")
    if all(item is None for item in layout):
        raise ValueError("a layout holds at least one item; got four empty places")
    return tuple(None if item is None else int(item) for item in layout)


def all_layouts() -> Iterator[Layout]:
    """Every layout with 1 to 4 items: 11**4 - 1 = 14640 of them."""
    for layout in itertools.product((None, *range(len(ITEM_NAMES))), repeat=len(PLACES)):
        if any(item is not None for item in layout):
            yield layout


def is_held_out(item_a: int, place_a: int, item_b: int, place_b: int) -> bool:
    """Whether item_a at place_a together with item_b at place_b is a held-out pairing (order-free)."""
    if place_a > place_b:
        item_a, place_a, item_b, place_b = item_b, place_b, item_a, place_a
    return ((item_a, place_a), (item_b, place_b)) in HELD_OUT_PAIRINGS


def random_seen_layout(num_items: int, generator: np.random.Generator) -> list[int | None]:
    """``num_items`` items at random places, each drawn from the items that form no held-out pairing with those
    placed before it (places in order), so the layout is seen by construction."""
    layout: list[int | None] = [None] * len(PLACES)
    for place in np.sort(generator.choice(len(PLACES), size=num_items, replace=False)).tolist():
        allowed = [
            item
            for item in range(len(ITEM_NAMES))
            if not any(other is not None and is_held_out(other, p, item, place) for p, other in enumerate(layout))
        ]
        layout[place] = allowed[int(generator.integers(len(allowed)))]
    return layout


def held_out_pairings(layout: Sequence[int | None]) -> list[Pairing]:
    """The held-out pairings ``((item a, place p), (item b, place q))`` a layout contains (empty: seen)."""
    layout = check_layout(layout)
    found = []
    for p, q in PLACE_PAIRS:
        a, b = layout[p], layout[q]
        if a is not None and b is not None and ((a, p), (b, q)) in HELD_OUT_PAIRINGS:
            found.append(((a, p), (b, q)))
    return found


def _clause(item: int, place: int, preposition: str = "in") -> str:
    name = ITEM_NAMES[item]
    article = "an" if name[0] in "aeiou" else "a"
    return f"{article} {name} {preposition} the {PLACES[place]}"


def caption_for(layout: Sequence[int | None]) -> str:
    """The canonical caption of a layout, e.g. ``(7, None, None, 8)`` ->
    ``"a sneaker in the top left and a bag in the bottom right"``."""
    layout = check_layout(layout)
    return " and ".join(_clause(item, place) for place, item in enumerate(layout) if item is not None)


def paraphrase_for(layout: Sequence[int | None], generator: np.random.Generator) -> str:
    """A paraphrase: the clauses shuffled, "in the" or "at the", joined by ", " with a final " and ".

    Example: ``(7, None, None, 8)`` -> ``"a bag at the bottom right and a sneaker at the top left"``.
    """
    layout = check_layout(layout)
    clauses = [(item, place) for place, item in enumerate(layout) if item is not None]
    preposition = ("in", "at")[int(generator.integers(2))]
    texts = [_clause(*clauses[i], preposition) for i in generator.permutation(len(clauses))]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]


_CLAUSE = re.compile(
    r"(?:a|an) (?P<item>{items}) (?:in|at) the (?P<place>{places})".format(
        items="|".join(re.escape(name) for name in ITEM_NAMES), places="|".join(PLACES)
    )
)
# " and " needs spaces on both sides, so the "and" inside "sandal" never splits a clause.
_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def parse_caption(text: str) -> Layout:
    """Read a layout back from a canonical caption or a paraphrase.

    Case, extra spaces, a final "." and the choice of "a"/"an" are ignored; clauses may come in any order.

    Example: ``"a sneaker in the top left and a bag in the bottom right"`` -> ``(7, None, None, 8)``.

    Raises:
        ValueError: a clause is not "a|an ITEM in|at the PLACE", or two clauses name the same place.
    """
    normalized = " ".join(text.lower().split()).rstrip(".").strip()
    if not normalized:
        raise ValueError("cannot parse an empty caption; expected e.g. 'a bag in the top left'")
    layout: list[int | None] = [None] * len(PLACES)
    for clause in _SEPARATOR.split(normalized):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            raise ValueError(
                f"cannot parse {clause!r} in caption {text!r}: expected 'a|an ITEM in the PLACE' joined by ' and ', "
                f"ITEM one of {', '.join(ITEM_NAMES)}; PLACE one of {', '.join(PLACES)}"
            )
        place = PLACES.index(match["place"])
        if layout[place] is not None:
            raise ValueError(f"caption {text!r} names the {PLACES[place]} twice; each place holds one item")
        layout[place] = ITEM_NAMES.index(match["item"])
    return tuple(layout)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (see the module docstring for the procedure).

    Args:
        item_count_weights: relative weights of 1, 2, 3 and 4 items per scene.
        canonical_probability: chance a scene's caption is the canonical one rather than a paraphrase.
        unseen_fraction: share of held-out ("test") scenes built around a held-out pairing; train scenes
            never contain one.
    """

    item_count_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    canonical_probability: float = 1.0
    unseen_fraction: float = 0.5

    def __post_init__(self) -> None:
        weights = tuple(float(weight) for weight in self.item_count_weights)
        object.__setattr__(self, "item_count_weights", weights)
        finite = all(np.isfinite(weight) for weight in weights)  # inf or nan would turn every probability into nan
        if len(weights) != len(PLACES) or not finite or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"item_count_weights are 4 finite non-negative weights (1..4 items), not all 0; got {weights}"
            )
        if not 0.0 <= self.canonical_probability <= 1.0:
            raise ValueError(f"canonical_probability must be in [0, 1], got {self.canonical_probability}")
        if not 0.0 <= self.unseen_fraction <= 1.0:
            raise ValueError(f"unseen_fraction must be in [0, 1], got {self.unseen_fraction}")


@dataclass(frozen=True)
class Scene:
    """One scene: what is where, which images draw it, and its caption.

    Attributes:
        layout: class id or None per place.
        sources: per place, the index of the item's image in the split's Fashion-MNIST arrays, or None.
        unseen: the layout contains a held-out pairing.
        caption: the caption this scene is shown with (canonical or a paraphrase).
    """

    layout: Layout
    sources: tuple[int | None, int | None, int | None, int | None]
    unseen: bool
    caption: str


class SceneDataset(Dataset):
    """Scenes drawn on the fly from Fashion-MNIST arrays, as (image (channels, 64, 64) in [-1, 1], caption).

    Scene ``i`` is a pure function of (seed, split, i, config, arrays), the same scene ``build_scenes`` writes
    as ``images/{i}.png``.

    Args:
        images: uint8 (N, 28, 28) Fashion-MNIST images of one split.
        labels: int (N,) class ids; every class must occur.
        split: "train" (seen pairings only) or "test" (held-out scenes; a share are unseen).
        count: number of scenes.
        seed: scene seed.
        config: sampling settings.
        channels: 1 (grayscale) or 3 (gray repeated as RGB).

    Example:
        >>> dataset = SceneDataset.from_fashion_mnist(None, "train", count=60000)
        >>> image, caption = dataset[0]  # (1, 64, 64) in [-1, 1], "a coat in the top right and ..."
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        split: str,
        count: int,
        seed: int = 0,
        config: SceneConfig = SceneConfig(),
        channels: int = 1,
    ) -> None:
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if split == "test" and config.unseen_fraction > 0 and sum(config.item_count_weights[1:]) <= 0:
            # train scenes never use unseen_fraction, so only held-out builds need room for a held-out pairing
            raise ValueError(
                "unseen test scenes need 2 or more items: give 2..4 items some weight or set unseen_fraction 0"
            )
        if images.ndim != 3 or images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE) or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
        labels = np.asarray(labels, dtype=np.int64)
        self.class_indices = [np.flatnonzero(labels == item) for item in range(len(ITEM_NAMES))]
        missing = [ITEM_NAMES[item] for item, pool in enumerate(self.class_indices) if len(pool) == 0]
        if missing:
            raise ValueError(f"the {split} images hold no {', '.join(missing)}; scenes need every class")
        if seed < 0:
            raise ValueError(f"seed must be 0 or more (it seeds numpy.random.default_rng), got {seed}")
        self.images = images
        self.labels = labels
        self.split = split
        self.count = count
        self.seed = seed
        self.config = config
        self.channels = channels
        weights = np.asarray(config.item_count_weights)
        self._count_probs = weights / weights.sum()
        self._pair_count_probs = weights[1:] / max(weights[1:].sum(), 1e-12)  # 2..4 items (unseen scenes)

    @classmethod
    def from_fashion_mnist(
        cls,
        root: str | os.PathLike | None,
        split: str,
        count: int,
        seed: int = 0,
        config: SceneConfig = SceneConfig(),
        channels: int = 1,
    ) -> SceneDataset:
        """Scenes from the Fashion-MNIST IDX files in ``root`` (None: ``fashion_mnist.default_root()``)."""
        images, labels = load_fashion_mnist(root, split)
        return cls(images, labels, split, count, seed, config, channels)

    def __len__(self) -> int:
        return self.count

    def _seen_layout(self, generator: np.random.Generator) -> list[int | None]:
        return random_seen_layout(1 + int(generator.choice(len(PLACES), p=self._count_probs)), generator)

    def _unseen_layout(self, generator: np.random.Generator) -> list[int | None]:
        p, q = PLACE_PAIRS[int(generator.integers(len(PLACE_PAIRS)))]
        item_a = int(generator.integers(len(ITEM_NAMES)))
        layout: list[int | None] = [None] * len(PLACES)
        layout[p] = item_a
        layout[q] = (HELD_OUT_MULTIPLIER * item_a + PLACE_PAIRS.index((p, q))) % len(ITEM_NAMES)
        num_items = 2 + int(generator.choice(len(PLACES) - 1, p=self._pair_count_probs))
        free = [place for place in range(len(PLACES)) if layout[place] is None]
        for place in np.sort(generator.choice(free, size=num_items - 2, replace=False)).tolist():
            layout[place] = int(generator.integers(len(ITEM_NAMES)))
        return layout

    def scene(self, index: int) -> Scene:
        """Draw scene ``index`` (see the module docstring for the order of the draws)."""
        if not 0 <= index < self.count:
            raise IndexError(f"scene index {index} is outside [0, {self.count})")
        generator = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        if self.split == "test" and generator.random() < self.config.unseen_fraction:
            layout = check_layout(self._unseen_layout(generator))
        else:
            layout = check_layout(self._seen_layout(generator))
        sources = tuple(
            None if item is None else int(self.class_indices[item][generator.integers(len(self.class_indices[item]))])
            for item in layout
        )
        if generator.random() < self.config.canonical_probability:
            caption = caption_for(layout)
        else:
            caption = paraphrase_for(layout, generator)
        return Scene(layout, sources, bool(held_out_pairings(layout)), caption)

    def render(self, scene: Scene) -> np.ndarray:
        """The scene's canvas: uint8 (64, 64), 0 = black background."""
        canvas = np.zeros((CANVAS_SIZE, CANVAS_SIZE), dtype=np.uint8)
        for place, source in enumerate(scene.sources):
            if source is None:
                continue
            row, col = divmod(place, 2)
            top, left = row * QUADRANT_SIZE, col * QUADRANT_SIZE
            canvas[top : top + QUADRANT_SIZE, left : left + QUADRANT_SIZE] = np.pad(self.images[source], PADDING)
        return canvas

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        """Returns (image (channels, 64, 64) float32 in [-1, 1], caption)."""
        scene = self.scene(index)
        return prepare_images(self.render(scene), CANVAS_SIZE, self.channels), scene.caption

    def settings(self) -> dict[str, Any]:
        """What determines every scene: written to scenes.json and compared when a build resumes."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        digest.update(self.labels.astype("<i8").tobytes())
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "split": self.split,
            "count": self.count,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "source": {"split": self.split, "images": len(self.labels), "sha256": digest.hexdigest()},
        }


def scene_rules() -> dict[str, Any]:
    """The fixed rules of every scene set, spelled out for scenes.json."""
    return {
        "canvas_size": CANVAS_SIZE,
        "quadrant_size": QUADRANT_SIZE,
        "padding": PADDING,
        "places": list(PLACES),
        "items": list(ITEM_NAMES),
        "caption": "'a|an ITEM in the PLACE' per item in place order, joined with ' and '",
        "held_out_rule": HELD_OUT_RULE,
        "place_pairs": [list(pair) for pair in PLACE_PAIRS],
        "held_out_pairings": sorted([list(a), list(b)] for a, b in HELD_OUT_PAIRINGS),
    }


# The settings that decide every scene, each with the make-scenes flag that sets it (the CLI's words in messages).
_SETTING_FLAGS = {
    ("split",): "--split",
    ("seed",): "--seed",
    ("config", "item_count_weights"): "--item-count-weights",
    ("config", "canonical_probability"): "--canonical-probability",
    ("config", "unseen_fraction"): "--unseen-fraction",
}


def _setting(settings: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        settings = settings.get(key) if isinstance(settings, dict) else None
    return settings


def _flag_value(value: Any) -> str:
    return ",".join(f"{item:g}" for item in value) if isinstance(value, list) else str(value)


def check_same_scenes(out_dir: Path, recorded: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse to resume or grow the build in ``out_dir`` when a setting other than the count differs, naming each
    difference as the flag with its new value and the folder's value, and the two ways out."""
    if (recorded.get("format"), recorded.get("version")) != (settings["format"], settings["version"]):
        raise ValueError(
            f"{out_dir} holds scenes built with other settings (a scene format other than version "
            f"{settings['version']}); choose another output folder or delete this one"
        )
    differences = []
    for path, flag in _SETTING_FLAGS.items():
        new, old = _setting(settings, path), _setting(recorded, path)
        if new != old:
            differences.append(f"{flag} {_flag_value(new)} (this folder: {_flag_value(old)})")
    if recorded.get("source") != settings["source"] and recorded.get("split") == settings["split"]:
        # (another --split reads the other split's images: named above already)
        old_source = recorded.get("source") or {}
        differences.append(
            f"--data: other Fashion-MNIST images ({settings['source']['images']} {settings['source']['split']} "
            f"images; this folder's: {old_source.get('images', '?')}, another copy or version of the data)"
        )
    if differences:
        raise ValueError(
            f"{out_dir} holds scenes built with other settings: {'; '.join(differences)}. Re-run with the folder's "
            "settings to resume or grow it, or choose another --out (or delete this one)"
        )


def image_name_width(count: int) -> int:
    """Digits of the image names of a build of ``count`` scenes: images/00000.png ... (at least 5)."""
    return max(5, len(str(count - 1)))


def check_can_grow(out_dir: Path, recorded_count: int, count: int) -> None:
    """A build of ``recorded_count`` scenes may go on to ``count`` only when none of its scenes would be dropped
    and its image names keep their width (images/00000.png: a wider name would orphan every existing PNG)."""
    if count < recorded_count:
        raise ValueError(
            f"{out_dir} holds a build of {recorded_count} scenes, and --count {count} would drop some: give "
            f"--count {recorded_count} or more, or choose another --out"
        )
    if image_name_width(count) != image_name_width(recorded_count):
        raise ValueError(
            f"{out_dir} holds {recorded_count} scenes named with {image_name_width(recorded_count)} digits, and "
            f"{count} scenes need {image_name_width(count)}: a build cannot grow past "
            f"{10 ** image_name_width(recorded_count)} scenes in place; build the larger set in another --out"
        )


def _write_png(path: Path, canvas: np.ndarray) -> None:
    # Rename into place so an interrupted build never leaves a half-written PNG that a resume would trust.
    # No fsync per file: 60000 of them would dominate the build; a power cut may cost a rebuild.
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(canvas).save(tmp, format="PNG")
    os.replace(tmp, path)


def build_scenes(
    fashion_mnist_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    split: str,
    count: int,
    seed: int = 0,
    config: SceneConfig = SceneConfig(),
    progress: bool = True,
) -> Path:
    """Write ``count`` scenes as PNGs, ``captions.jsonl`` and ``scenes.json`` into ``out_dir``.

    Re-running the same call resumes an interrupted build (existing PNGs are kept) or, once
    ``scenes.json`` exists, does nothing. A larger ``count`` with the same other settings grows the build:
    scene ``i`` does not depend on ``count``, so the first scenes stay as they are and only the new ones are
    drawn. A folder built with other settings (the message names each, recorded and new), a smaller ``count``,
    or a non-empty folder that is not a scene build, is refused with a ValueError.

    Args:
        fashion_mnist_dir: folder with the IDX files; None uses ``fashion_mnist.default_root()``.
        out_dir: output folder (created).
        split: "train" (items from the train split) or "test" (held-out scenes, items from the test split).
        count: number of scenes.
        seed: scene seed.
        config: sampling settings.
        progress: show a tqdm bar.

    Returns:
        ``out_dir`` as a Path.
    """
    dataset = SceneDataset.from_fashion_mnist(fashion_mnist_dir, split, count, seed, config)
    settings = json.loads(json.dumps(dataset.settings()))  # as read back from JSON: lists, not tuples
    out_dir = Path(out_dir)
    index_path, pending_path = out_dir / "scenes.json", out_dir / ".scenes-build.json"
    # The build in progress (its settings are the newest) or else the finished one decides what this call may do.
    recorded_path = next((path for path in (pending_path, index_path) if path.is_file()), None)
    if recorded_path is None:
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise ValueError(f"{out_dir} is not empty and holds no scene build; choose an empty or new folder")
    else:
        recorded = json.loads(recorded_path.read_text())
        check_same_scenes(out_dir, recorded, settings)
        if recorded["count"] == count and recorded_path == index_path:
            logger.info("%s already holds these %d scenes; nothing to do", out_dir, count)
            return out_dir
        check_can_grow(out_dir, recorded["count"], count)
    if recorded_path != pending_path or json.loads(pending_path.read_text()) != settings:
        atomic_write_text(pending_path, json.dumps(settings, indent=1))
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    width = image_name_width(count)
    scenes, names = [], []
    for index in tqdm(range(count), desc=f"scenes ({split})", unit="scene", disable=not progress):
        scene = dataset.scene(index)
        name = f"images/{index:0{width}d}.png"
        if not (out_dir / name).is_file():
            _write_png(out_dir / name, dataset.render(scene))
        scenes.append(scene)
        names.append(name)
    lines = [json.dumps({"image": name, "caption": scene.caption}) for name, scene in zip(names, scenes)]
    atomic_write_text(out_dir / "captions.jsonl", "\n".join(lines) + "\n")
    records = [
        {
            "image": name,
            "layout": list(scene.layout),
            "sources": list(scene.sources),
            "unseen": scene.unseen,
            "caption": scene.caption,
            "canonical_caption": caption_for(scene.layout),
        }
        for name, scene in zip(names, scenes)
    ]
    index = {**settings, "rules": scene_rules(), "scenes": records}
    atomic_write_text(index_path, json.dumps(index, indent=None, separators=(",", ":")))
    pending_path.unlink()
    return out_dir


def read_scene_index(folder: str | os.PathLike) -> dict[str, Any]:
    """Load ``folder/scenes.json`` (settings, rules and one record per scene), checking its format."""
    path = Path(folder) / "scenes.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; build the scenes with `nextscale make-scenes`")
    index = json.loads(path.read_text())
    if index.get("format") != INDEX_FORMAT or index.get("version") != INDEX_VERSION:
        raise ValueError(f"{path} is not a version-{INDEX_VERSION} scene index ({INDEX_FORMAT})")
    for record in index["scenes"]:
        record["layout"] = check_layout(record["layout"])
    return index
