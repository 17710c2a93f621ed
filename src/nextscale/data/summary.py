"""What the training commands say about the data before they start: counts, classes, file sizes, held-out
source, and the image size and scale schedule the model will see.

A new user's first question is "is it using my images the way I think?"; these lines answer it in the log
(INFO, printed by default). Example for a plain folder of 60 RGB pictures in 6 classes::

    data: 54 training images from data/shapes (without the 6 held-out images), 6 classes (0: blue_circle, ...)
    files: 32x32 RGB (sizes read from all 54 files)
    held-out: 6 of the 60 images of data/shapes (5 %, at least 1 per class, seed 0), carved out as it has no ...
    images 32x32 RGB -> tokens: scales 1,2,4,8 (85 tokens), from --resolution 32

File sizes (upright: a photo stored sideways with an EXIF orientation counts as it is shown) and modes are read
from image headers only (no decoding), from at most ``SIZE_SAMPLE`` files spread
evenly over the sorted list, so the summary costs well under a second even for ImageNet. (Whether every file is
usable is a separate check, logged before the summary: ``training.data_specs.check_bad_images``.) Files with
transparent pixels (``data.transforms.has_transparency``: RGBA, LA, PA, and palette, RGB or gray PNGs with a
transparent colour) add "transparent pixels composited on white", as ``data.transforms.convert_mode`` does to them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from nextscale.data.caption_base import CaptionDataset, _image_stream
from nextscale.data.fashion_mnist import FashionMNIST
from nextscale.data.image_reading import holds_gray, open_header, upright_size
from nextscale.data.images import ImageFolderDataset
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.data.transforms import ALPHA_BACKGROUND, has_transparency
from nextscale.scales import ScaleSchedule

SIZE_SAMPLE = 64  # image headers read for the size summary
SHOWN_CLASSES = 12  # class names listed in full up to this many


@dataclass(frozen=True)
class FileSizes:
    """Sizes and Pillow modes of a sample of a dataset's image files.

    Attributes:
        sizes: (width, height) -> files with that size, among the checked ones.
        modes: Pillow mode ("RGB", "L", "RGBA", "P", ...) -> files.
        checked: files whose header was read.
        total: files in the dataset.
        transparent: files among the checked ones with transparent pixels (composited on white when read).
        gray: files among the checked ones that hold gray pixels (``holds_gray``: an "LA" WebP reads back RGBA).
    """

    sizes: Counter
    modes: Counter
    checked: int
    total: int
    transparent: int = 0
    gray: int = 0

    def describe(self) -> str:
        """E.g. ``32x32 RGB (sizes read from all 60 files)``, or ``28x28 to 640x480 RGBA, L, transparent pixels
        composited on white (sizes read from 64 of 1000 files)``."""
        modes = ", ".join(mode for mode, _ in self.modes.most_common())
        alpha = f", transparent pixels composited on {BACKGROUND}" if self.transparent else ""
        read = f"all {self.total}" if self.checked == self.total else f"{self.checked} of {self.total}"
        read = "the one" if self.total == 1 else read
        return f"{self.span()} {modes}{alpha} (sizes read from {read} file{'s' * (self.total != 1)})"

    def span(self) -> str:
        """The size, or the smallest to the largest: ``32x32`` or ``28x28 to 640x480``."""
        if len(self.sizes) == 1:
            return _size(next(iter(self.sizes)))
        by_area = sorted(self.sizes, key=lambda wh: (wh[0] * wh[1], wh))
        return f"{_size(by_area[0])} to {_size(by_area[-1])}"

    def most_elongated(self) -> tuple[int, int]:
        """The (width, height) whose shorter side is the smallest fraction of its longer one."""
        return min(self.sizes, key=lambda wh: (min(wh) / max(wh), wh))

    @property
    def single_size(self) -> tuple[int, int] | None:
        return next(iter(self.sizes)) if len(self.sizes) == 1 else None


BACKGROUND = {255: "white", 0: "black"}.get(ALPHA_BACKGROUND, f"gray {ALPHA_BACKGROUND}")


def _size(wh: tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


def _files(dataset) -> list:
    if isinstance(dataset, ImageFolderDataset):
        return [path for path, _ in dataset.samples]
    if isinstance(dataset, CaptionDataset):
        return [sample.source for sample in dataset.samples]
    return []


def file_sizes(dataset, limit: int = SIZE_SAMPLE) -> FileSizes | None:
    """Sizes and modes of up to ``limit`` image files of an image-folder or caption dataset (None for others)."""
    files = _files(dataset)
    if not files:
        return None
    # Spread over the whole sorted list: a stride of len // limit read the first ``limit`` files of a folder with
    # fewer than twice as many, often all of them from the first classes.
    count = min(limit, len(files))
    spread = [files[index * len(files) // count] for index in range(count)]
    sizes, modes = Counter(), Counter()
    checked = transparent = gray = 0
    for source in spread:
        try:
            # Reads the header only (a PNG's tRNS chunk too); a huge file is reported once, by the dataset's check.
            with open_header(_image_stream(source)) as image:
                sizes[upright_size(image)] += 1  # as the model sees it: phone photos stored sideways turned
                modes[image.mode] += 1
                transparent += has_transparency(image)
                gray += holds_gray(image)
                checked += 1
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue  # unreadable (or huge) files are reported by the dataset itself when read
    return FileSizes(sizes, modes, checked, len(files), transparent, gray) if checked else None


def _classes(names: Sequence[str] | None) -> str:
    if not names:
        return ""
    shown = ", ".join(f"{index}: {name}" for index, name in enumerate(names[:SHOWN_CLASSES]))
    more = f", ... ({len(names) - SHOWN_CLASSES} more)" if len(names) > SHOWN_CLASSES else ""
    return f", {len(names)} {'class' if len(names) == 1 else 'classes'} ({shown}{more})"


def _origin(dataset) -> str:
    if isinstance(dataset, ImageFolderDataset):
        return dataset.origin
    if isinstance(dataset, FashionMNIST):
        return f"Fashion-MNIST {dataset.split} split"
    if isinstance(dataset, TokenShardDataset):
        source = dataset.manifest.get("source")
        return f"token folder {dataset.root}" + (f" (tokenized from {source})" if source else "")
    return getattr(dataset, "origin", "") or type(dataset).__name__  # the caption datasets name their source


def _kind(dataset) -> str:
    if isinstance(dataset, TokenShardDataset):
        return "token sequences"
    if isinstance(dataset, CaptionDataset):
        return "captioned images"
    return "images"


def describe_data(
    train_set,
    held_out_set=None,
    held_out_note: str | None = None,
    role: str = "training",
    held_out_flags: str = "--eval-data or --eval-tokens",
) -> list[str]:
    """The data summary lines: count and classes, file sizes and modes, held-out source (one line).

    Args:
        train_set: the dataset trained on (or tokenized).
        held_out_set: the evaluation dataset, or None.
        held_out_note: the "held-out: ..." line of a split carved from a folder (``data.folders.held_out_note``),
            or None. It stands for the held-out line when ``held_out_set`` is that split (or None).
        role: what ``train_set`` is for, e.g. "training" or "val".
        held_out_flags: the command's flags that name held-out data, for the hint when there is none ("" if it
            has none).
    """
    names = getattr(train_set, "classes", None)
    kind = _kind(train_set) if len(train_set) != 1 else _kind(train_set).removesuffix("s")
    # tokenize --split all tokenizes every image: "8 captioned images (all: none held out)", not "8 all captioned"
    counted = f"{len(train_set)} {kind} (all: none held out)" if role == "all" else f"{len(train_set)} {role} {kind}"
    lines = [f"data: {counted} from {_origin(train_set)}{_classes(names)}"]
    if isinstance(train_set, FashionMNIST):
        lines.append(f"files: 28x28 grayscale IDX arrays, shown to the model at {train_set.size}x{train_set.size}")
    sizes = file_sizes(train_set)
    if sizes is not None:
        lines.append(f"files: {sizes.describe()}")
    # The carved split's line says it all; held-out data from elsewhere (--eval-data) replaces that split.
    carved = held_out_set is None or getattr(held_out_set, "split_note", None) == held_out_note
    if held_out_note is not None and (carved or role != "training"):
        lines.append(held_out_note)
    elif role == "training" and held_out_set is None:
        where = "split the data into DIR/train and DIR/val sub-folders" + (
            f", or pass {held_out_flags}" if held_out_flags else ""
        )
        lines.append(f"held-out: none, so no held-out evaluation ({where})")
    elif role == "training":
        kind = _kind(held_out_set) if len(held_out_set) != 1 else _kind(held_out_set).removesuffix("s")
        lines.append(f"held-out: {len(held_out_set)} {kind} from {_origin(held_out_set)}")
    return lines


CHANNEL_NAMES = {1: "grayscale", 3: "RGB"}


def resolution_line(
    image_size: int,
    channels: int,
    scale_sides: Sequence[int],
    source: str,
    sizes: FileSizes | None = None,
    downsample: int = 1,
    training: bool = True,
    trained_side: int | None = None,
) -> str:
    """``images 32x32 RGB -> tokens: scales 1,2,4,8 (85 tokens), from preset tiny``, plus a warning when the
    files are another size or colour mode than the model sees, or the tokenizer works at another size than it was
    trained at.

    Args:
        image_size: pixels per side the model sees.
        channels: 1 or 3.
        scale_sides: the token schedule.
        source: where the schedule came from ("preset tiny", "--resolution 64", "--scale-sides", ...).
        sizes: the data's file sizes (``file_sizes``), or None.
        downsample: the tokenizer's downsampling factor (a suggested --resolution is a multiple of it).
        training: the images are trained on (random crops) rather than tokenized (center crops).
        trained_side: the side a trained tokenizer was trained at (``tokenize``, ``train``); None while training
            the tokenizer itself (``train-tokenizer``, the one command whose ``--in-channels`` a colour hint names).
    """
    schedule = ScaleSchedule(tuple(scale_sides))
    colour = CHANNEL_NAMES.get(channels, f"{channels}-channel")
    sides = ",".join(str(side) for side in schedule.sides)
    line = (
        f"images {image_size}x{image_size} {colour} -> tokens: scales {sides} ({schedule.total_tokens} tokens), "
        f"from {source}"
    )
    # A tokenizer is convolutional, so it runs at any size, but reconstructs best at the size it was trained at.
    retrain = "a tokenizer trained at {side} px (train-tokenizer --resolution {side}) reconstructs them better"
    notes = []
    if trained_side is not None and trained_side != image_size:
        notes.append(
            f"the tokenizer was trained at {trained_side}x{trained_side}, not {image_size}x{image_size}: "
            + retrain.format(side=image_size)
        )
    if sizes is None:
        return "; ".join([line, *notes])
    single = sizes.single_size
    if single is not None and single != (image_size, image_size):
        keep = max(downsample, min(single) // downsample * downsample)
        hint = f"pass --resolution {keep} to keep them" if keep != image_size else "they are resized and cropped"
        if keep != image_size and trained_side is not None and keep != trained_side:
            hint += f" ({retrain.format(side=keep)} than this one, trained at {trained_side} px)"
        verb = "training" if training else "tokenizing"
        notes.append(f"your images are {_size(single)}; {verb} at {image_size}x{image_size} ({source}) - {hint}")
    elif single is None:
        crop = "randomly cropped (center-cropped for evaluation)" if training else "center-cropped"
        notes.append(
            f"your images vary in size ({sizes.span()}); each is resized (shorter side) and {crop} to "
            f"{image_size}x{image_size}"
        )
    # The square crop keeps about shorter / longer of a picture's long side: a 100x30 one loses 70 % of its width,
    # with whatever its caption places at the left or right.
    elongated = sizes.most_elongated() if sizes.sizes else (1, 1)
    if min(elongated) / max(elongated) < 0.5:
        kept = round(100 * min(elongated) / max(elongated))
        notes.append(
            f"the most elongated, {_size(elongated)}, keeps only about its middle {kept} % (the square crop cuts "
            "its ends; crop or pad such pictures yourself to keep them)"
        )
    gray = sizes.gray == sizes.checked
    # Only train-tokenizer has --in-channels (trained_side None); tokenize and train take the tokenizer's channels.
    if trained_side is None:
        gray_fix, colour_fix = "pass --in-channels 1 to train on one channel", "pass --in-channels 3 to keep them"
    else:
        gray_fix = "a one-channel tokenizer, from `train-tokenizer --in-channels 1`, fits them"
        colour_fix = "a colour tokenizer, from `train-tokenizer --in-channels 3`, keeps them"
    if channels == 3 and gray:
        notes.append(f"your images are grayscale; the model is RGB ({gray_fix})")
    if channels == 1 and not gray:
        notes.append(f"your images are in colour; the model is grayscale, so colours are lost ({colour_fix})")
    return "; ".join([line, *notes])
