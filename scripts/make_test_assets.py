"""Write the small data files the tests use, so tests never need the system dataset.

    python scripts/make_test_assets.py [--data /usr/share/datasets/fashion-mnist]

Writes tests/assets/fashion_mnist/ (the first 20 train and 10 test images of every class, gzip IDX,
about 100 KB) and tests/assets/image_folder/ (four small non-square images in two class folders).
The output is deterministic: running it twice gives identical bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from nextscale.data.fashion_mnist import CLASS_NAMES, SPLIT_FILES, load_fashion_mnist, write_idx

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"
PER_CLASS = {"train": 20, "test": 10}


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` samples of each class, in dataset order."""
    chosen = [np.flatnonzero(labels == label)[:per_class] for label in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate(chosen))


def write_fashion_subset(data: str | None, out: Path) -> None:
    for split, per_class in PER_CLASS.items():
        images, labels = load_fashion_mnist(data, split)
        keep = first_per_class(labels, per_class)
        image_stem, label_stem = SPLIT_FILES[split]
        write_idx(out / f"{image_stem}.gz", images[keep])
        write_idx(out / f"{label_stem}.gz", labels[keep].astype(np.uint8))
        print(f"{split}: {len(keep)} images -> {out}")


def write_image_folder(data: str | None, out: Path) -> None:
    """Two classes ("bag", "sneaker") of coloured, upscaled Fashion-MNIST images, 48x40 and 40x56 pixels."""
    images, labels = load_fashion_mnist(data, "test")
    for class_name, label in (("bag", 8), ("sneaker", 7)):
        folder = out / class_name
        folder.mkdir(parents=True, exist_ok=True)
        picks = np.flatnonzero(labels == label)[:2]
        for number, (index, size, suffix) in enumerate(zip(picks, ((48, 40), (40, 56)), (".png", ".jpg"))):
            gray = Image.fromarray(images[index]).resize(size, Image.Resampling.BICUBIC)
            tint = np.asarray(gray, dtype=np.float32)[:, :, None] * np.array([1.0, 0.7, 0.4], dtype=np.float32)
            rgb = Image.fromarray(tint.round().astype(np.uint8), mode="RGB")
            rgb.save(folder / f"{number:03d}{suffix}", **({"quality": 90} if suffix == ".jpg" else {}))
    print(f"image folder -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=None,
        help="Fashion-MNIST folder (default: $NEXTSCALE_FASHION_MNIST or /usr/share/datasets/fashion-mnist)",
    )
    parser.add_argument("--out", type=Path, default=ASSETS, help="assets folder (default: tests/assets)")
    args = parser.parse_args()
    write_fashion_subset(args.data, args.out / "fashion_mnist")
    write_image_folder(args.data, args.out / "image_folder")


if __name__ == "__main__":
    main()
