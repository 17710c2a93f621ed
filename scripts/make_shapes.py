"""Write a tiny "your own images" data set: coloured circles and squares in class sub-folders.

    python scripts/make_shapes.py --out data/shapes            # 6 classes x 10 images, 32x32 RGB PNG
    python scripts/make_shapes.py --captions --out data/shapes-captions   # the same shapes, captioned


Classes are ``{red,green,blue}_{circle,square}``; each image is one shape of jittered size, position and
shade on a light-grey background. It stands in for a user's own folder in the README section "Train on your
own images" (recipe: configs/own_images_tokenizer.json + configs/own_images_transformer.json) and in the
tests. The output is deterministic: the same arguments give identical files.

With ``--captions`` the same images are written as a caption folder for a text-to-image model instead:
``out/train/{class}_{index:03d}.png`` with a ``.txt`` of two captions that name colour, shape and corner
("a red circle in the top left" and "red circle, top left"), and the last image of each class in ``out/val/``
(README "Text-to-image on your own captioned images"; configs/own_captions_transformer.json).
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
    """One ``size x size`` RGB image: a filled shape covering roughly 30-60 % of the side, off-centre (its box is
    ``image.info["box"]``)."""
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
    image.info["box"] = box
    return image


def corner(box: tuple[int, int, int, int], size: int) -> str:
    """Where the shape's centre lies: "top left", "bottom right", ..."""
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return f"{'top' if centre_y < size / 2 else 'bottom'} {'left' if centre_x < size / 2 else 'right'}"


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


def write_captioned_shapes(out: Path, per_class: int = 10, size: int = 32, seed: int = 0) -> list[Path]:
    """The same images as ``write_shapes``, as ``out/train`` and ``out/val`` caption folders (the last image of
    each class held out); returns the image files in sorted order."""
    written = []
    for class_idx, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        rng = np.random.default_rng([seed, class_idx])
        for index in range(per_class):
            image = draw_shape(COLOURS[colour], shape, size, rng)
            where = corner(image.info["box"], size)
            folder = out / ("val" if index == per_class - 1 else "train")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{colour}_{shape}_{index:03d}.png"
            image.save(path)
            path.with_suffix(".txt").write_text(f"a {colour} {shape} in the {where}\n{colour} {shape}, {where}\n")
            written.append(path)
    return sorted(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (class sub-folders are created)")
    parser.add_argument("--per-class", type=int, default=10, help="images per class (default 10: 60 in all)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sizes, positions and shades (default 0)")
    parser.add_argument(
        "--captions", action="store_true", help="write a caption folder (train/ + val/, .txt captions) instead"
    )
    args = parser.parse_args()
    write = write_captioned_shapes if args.captions else write_shapes
    files = write(args.out, args.per_class, args.size, args.seed)
    print(f"wrote {len(files)} {args.size}x{args.size} images in {len(COLOURS) * len(SHAPES)} classes to {args.out}")


if __name__ == "__main__":
    main()
