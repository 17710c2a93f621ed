"""Zero-shot editing of a real image: inpainting, outpainting, class- or text-conditional editing.

Examples:
    nextscale edit --image photo.png --box 0.25 0.25 0.75 0.75 --out edited.png          # inpaint a box
    nextscale edit --image photo.png --mask mask.png --mode outpaint --out wider.png       # keep the mask
    nextscale edit --image photo.png --extend 0.6 --out framed.png                         # grow the canvas
    nextscale edit --image photo.png --box 0.2 0.2 0.8 0.8 --class 3 --side-by-side cmp.png
    nextscale edit --image shoe.png --box 0 0 0.75 1 --class "ankle boot" --out boot.png     # a class name
    nextscale edit --model star/ --image scene.png --box 0 0 0.5 0.5 --prompt "a bag in the top left"

The image is center-cropped to a square and resized to the model's resolution; --paste-back writes the
result at the input's original size and in its mode (a transparent PNG keeps its alpha, in the regenerated region
too; a grayscale one stays grayscale), with the input's own pixels outside the regenerated region. The region is a
box (y0 x0 y1 x1 as fractions, or pixels of the model-size image with --pixels; note the order: rows first, unlike
PIL's (x0, y0, x1, y1)) or a mask image (white = region). Inpainting regenerates the region; outpainting keeps it
and regenerates the rest. Sampling flags left out take the model's recommended settings (pipeline.json; `export`
records the cfg of the run's previews, so a model edits at the strength it samples at), else --cfg 3: a region
regenerated towards another class needs stronger guidance than a free sample (`sample`'s default is VAR's 1.5).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nextscale.cli.common import (
    IMAGE_FORMATS,
    add_model_argument,
    add_sampling_arguments,
    check_image_output,
    check_sampling_flags,
    class_spec,
    load_pipeline,
    sampling_kwargs,
    save_image,
)

if TYPE_CHECKING:
    from PIL import Image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--image", type=Path, required=True, help="input image (any size, PNG/JPEG/WebP)")
    region = parser.add_mutually_exclusive_group(required=True)
    region.add_argument("--box", type=float, nargs=4, metavar=("Y0", "X0", "Y1", "X1"), help="region box")
    region.add_argument("--mask", type=Path, help="region mask image (white = region, any size)")
    region.add_argument(
        "--extend",
        type=float,
        metavar="FRACTION",
        help="outpaint beyond the borders: shrink the image to this fraction (rounded to whole token cells) and "
        "generate a frame",
    )
    parser.add_argument("--pixels", action="store_true", help="--box is in pixels of the model-size image")
    parser.add_argument(
        "--mode",
        choices=("inpaint", "outpaint"),
        default=None,
        help="with --box or --mask: inpaint regenerates the region (default); outpaint keeps it, regenerates the rest",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--class",
        dest="class_label",
        type=class_spec,
        default=None,
        metavar="ID|NAME",
        help="target class (id or name) of the generated part (class models; default: unconditional)",
    )
    target.add_argument(
        "--prompt", default=None, help="what the generated part should show (text models; default: the empty prompt)"
    )
    parser.add_argument("--num", "--num-images", type=int, default=1, help="number of results (default: 1)")
    add_sampling_arguments(parser, cfg=3.0)  # without a recommendation: class edits need strong guidance
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("edited.png"),
        help="result image, .png, .jpg or .webp (default: edited.png; a grid if --num > 1; with --paste-back, OUT_0, "
        "OUT_1, ...)",
    )
    parser.add_argument(
        "--paste-back",
        action="store_true",
        help="write the result at the input's original size, gray or colour as it was (8 bits per channel: a 16-bit "
        "input comes back 8-bit): the regenerated region enlarged into the "
        "input, the kept region the input's own pixels, a transparent input's alpha kept (a .jpg is flattened on "
        "white; write .png to keep it) (with --extend: the extended picture at the input's resolution, its centre "
        "square 1 / FRACTION times larger, the frame opaque)",
    )
    parser.add_argument(
        "--side-by-side", type=Path, default=None, help="also write input | mask overlay | result(s) as one image"
    )


def pasted_paths(out: Path, count: int) -> list[Path]:
    """Where --paste-back writes ``count`` results: OUT itself for one, OUT_0, OUT_1, ... for several."""
    return [out] if count == 1 else [out.with_name(f"{out.stem}_{index}{out.suffix}") for index in range(count)]


def flattened_for(picture: Image.Image, path: Path) -> Image.Image:
    """``picture`` as ``path``'s format can store it: a JPEG has no alpha channel, so an "LA" or "RGBA" result is
    composited on white there (as the model saw the input's transparent pixels); other pictures are unchanged."""
    from PIL import Image

    from nextscale.data.transforms import ALPHA_BACKGROUND

    if picture.mode not in ("LA", "RGBA") or IMAGE_FORMATS[path.suffix.lower()] != "JPEG":
        return picture
    background = Image.new("RGBA", picture.size, (ALPHA_BACKGROUND,) * 3 + (255,))
    return Image.alpha_composite(background, picture.convert("RGBA")).convert(picture.mode.removesuffix("A"))


def check_fraction_box(box: list[float], pixels_flag: str | None) -> None:
    """Refuse a ``--box`` of fractions that does not lie inside the image, in the CLI's words and before any loading
    (the Python API says the same with its argument names); ``pixels_flag``: the flag that takes pixels, if any."""
    y0, x0, y1, x1 = box
    if 0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1:
        return
    hint = ""
    if min(box) >= 0 and max(box) > 1:
        fix = "give fractions" + (f", or pixels of the model-size image with {pixels_flag}" if pixels_flag else "")
        hint = f" (these look like pixels: {fix})"
    shown = " ".join(f"{value:g}" for value in box)
    raise ValueError(f"--box {shown} must lie inside the image as fractions in [0, 1] with y0 < y1 and x0 < x1{hint}")


def check_pastable(image: Path) -> None:
    """Refuse --paste-back before sampling for a picture too large to decode at full size (a JPEG over twice Pillow's
    pixel limit is edited from a shrunk copy, and pasting back needs the full-size pixels); reads the header only."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.open(image).close()
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"--paste-back needs {image} at full size, which is too large to decode ({err}); edit a smaller copy "
            "(a few thousand pixels a side), or leave out --paste-back to keep the model-size result"
        ) from err
    except (OSError, ValueError, SyntaxError):
        return  # unreadable: the edit itself names the file and the problem


def run(args: argparse.Namespace) -> int:
    from nextscale.data.grids import make_grid

    check_sampling_flags(args)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.extend is not None and not 0.0 < args.extend < 1.0:
        raise ValueError(
            f"--extend must be in (0, 1), got {args.extend}: the fraction of the new canvas the image keeps, e.g. 0.6"
        )
    if args.extend is not None and args.mode is not None:
        raise ValueError("--extend always keeps the image and generates a frame around it; leave out --mode")
    if args.pixels and args.box is None:
        raise ValueError("--pixels says how --box is given; it needs --box (a mask or --extend has no pixel values)")
    if args.box is not None and not args.pixels:
        check_fraction_box(args.box, pixels_flag="--pixels")
    if args.prompt is not None and not args.prompt.strip():
        raise ValueError("--prompt is empty; give some text, or omit --prompt for the empty prompt")
    for path, flag in ((args.image, "--image"), (args.mask, "--mask")):
        if path is not None and path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; give one image file (e.g. {path / 'photo.png'})")
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"{flag} {path} does not exist")
    for path, flag in ((args.out, "--out"), (args.side_by_side, "--side-by-side")):
        if path is not None:
            check_image_output(path, flag)
    if args.paste_back:
        check_pastable(args.image)
    pipe = load_pipeline(args)
    if pipe.is_text_conditional and args.class_label is not None:
        raise ValueError("this model is text-conditional: edit with --prompt TEXT (--class needs a class model)")
    if not pipe.is_text_conditional and args.prompt is not None:
        raise ValueError("this model is class-conditional: edit with --class (--prompt needs a text model)")
    kwargs = dict(
        class_label=args.class_label, prompt=args.prompt, num_images=args.num, output_type="pt", **sampling_kwargs(args)
    )
    image = str(args.image)
    if args.extend is not None:
        out = pipe.outpaint(image, inner_fraction=args.extend, **kwargs)
    elif args.box is not None:
        out = pipe.edit(image, mode=args.mode or "inpaint", box=tuple(args.box), box_in_pixels=args.pixels, **kwargs)
    else:
        from nextscale.data.image_reading import open_image

        out = pipe.edit(image, mode=args.mode or "inpaint", mask=open_image(args.mask), **kwargs)
    results = out.images * 2 - 1  # (N, C, S, S) in [-1, 1]
    if args.paste_back:
        pasted = out.pasted()
        written = pasted_paths(args.out, len(pasted))
        stored = [flattened_for(picture, path) for picture, path in zip(pasted, written)]
        for picture, path in zip(stored, written):
            save_image(picture, path)
        if stored[0].mode != pasted[0].mode:
            print(
                f"note: {args.out.suffix} has no alpha channel: the transparent input's result is on white (write "
                ".png or .webp to keep its transparency)"
            )
    else:
        save_image(make_grid(results, nrow=len(results), padding=0 if len(results) == 1 else 2), args.out)
        written = [args.out]
    print(f"wrote {', '.join(map(str, written))}")
    if args.side_by_side is not None:
        pictures, labels = out.side_by_side()
        save_image(make_grid(pictures, nrow=len(labels), labels=labels), args.side_by_side)
        print(f"wrote {args.side_by_side}")
    return 0
