"""Write a tiny "your own images" data set: coloured circles and squares in class sub-folders.

    python scripts/make_shapes.py --out data/shapes            # 6 classes x 10 images, 32x32 RGB PNG

Classes are ``{red,green,blue}_{circle,square}``; each image is one shape of jittered size, position and
shade on a light-grey background. It stands in for a user's own folder in the README section "Train on your
own images" (recipe: configs/own_images_tokenizer.json + configs/own_images_transformer.json) and in the
tests. The output is deterministic: the same arguments give identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220)}
SHAPES = ("circle", "square")
BACKGROUND = (235, 235, 235)


def draw_shape(colour: tuple[int, int, int], shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size x size`` RGB image: a filled shape covering roughly 30-60 % of the side, off-centre."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    side = int(rng.integers(round(0.3 * size), round(0.6 * size) + 1))
    left = int(rng.integers(1, size - side))
    top = int(rng.integers(1, size - side))
    shade = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in colour)
    box = (left, top, left + side, top + side)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=shade)
    else:
        draw.rectangle(box, fill=shade)
    return image


def write_shapes(out: Path, per_class: int = 10, size: int = 32, seed: int = 0) -> list[Path]:
    """Write ``out/{colour}_{shape}/{index:03d}.png`` for every class; returns the files in sorted order."""
    written = []
    for class_idx, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        folder = out / f"{colour}_{shape}"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, class_idx])
        for index in range(per_class):
            path = folder / f"{index:03d}.png"
            draw_shape(COLOURS[colour], shape, size, rng).save(path)
            written.append(path)
    return sorted(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (class sub-folders are created)")
    parser.add_argument("--per-class", type=int, default=10, help="images per class (default 10: 60 in all)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sizes, positions and shades (default 0)")
    args = parser.parse_args()
    files = write_shapes(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {len(files)} {args.size}x{args.size} images in {len(COLOURS) * len(SHAPES)} classes to {args.out}")


if __name__ == "__main__":
    main()
