"""The text half of ``nextscale demo``: a prompt grid and a text-conditioned edit from the bundled scene model.

The bundled text-to-image model (``assets/scenes``, STAR on 64x64 Fashion-MNIST scenes) draws items into
quadrants as the prompt says. The edit keeps three quadrants of a real held-out scene and regenerates the
fourth from a prompt that names the new item there (and the kept items where they are).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import BUNDLED_TEXT_MODEL, SAMPLING_FLAGS, resolve_sampling

EXAMPLE_SCENE = BUNDLED_TEXT_MODEL / "examples" / "scene.png"
EXAMPLE_CAPTION = BUNDLED_TEXT_MODEL / "examples" / "scene.txt"
DEMO_PROMPTS = (
    "a bag in the top left and a sneaker in the bottom right",
    "a dress in the top right",
    "a t-shirt in the top left and a trouser in the top right",
    "an ankle boot in the bottom left",
    "a coat in the top left and a sandal in the bottom right",
    "a pullover in the bottom right",
    "a shirt in the top right and a bag in the bottom left",
    "a sneaker in the top left and an ankle boot in the top right",
)
TEXT_SEEDS = 2
EDIT_PLACE = 0  # the top-left quadrant is regenerated
EDIT_ITEM = 8  # as a bag
QUADRANT_BOXES = ((0.0, 0.0, 0.5, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.0, 1.0, 0.5), (0.5, 0.5, 1.0, 1.0))
SHORT_PLACES = ("TL", "TR", "BL", "BR")


def short_label(prompt: str) -> str:
    """'a bag in the top left and a sneaker in the bottom right' -> 'TL bag, BR sneaker' (fits under a cell)."""
    from nextscale.data.scenes import ITEM_NAMES, parse_caption

    layout = parse_caption(prompt)
    return ", ".join(f"{SHORT_PLACES[p]} {ITEM_NAMES[item]}" for p, item in enumerate(layout) if item is not None)


def text_demo(pipe, args: argparse.Namespace, seed: int) -> None:
    """Write ``prompts.png`` (one row per prompt, one column per seed) and ``text_edit.png`` into args.out_dir.

    ``pipe`` is the loaded text-to-image pipeline (``demo`` loads and checks it before any sampling).
    """
    import torch

    from nextscale.cli.demo import enlarge
    from nextscale.data.grids import save_grid
    from nextscale.pretrained import atomic_write_text

    resolve_sampling(args, pipe)
    sampling = {name: getattr(args, name) for name in (*SAMPLING_FLAGS, "smooth", "masked_plan")}
    # Two seeds per prompt keep the text half to a few seconds (341 tokens per 64 px scene).
    out_dir, seeds, zoom = args.out_dir, min(args.seeds, TEXT_SEEDS), args.zoom
    columns = [
        pipe(prompt=list(DEMO_PROMPTS), seed=seed + j, output_type="pt", **sampling).images for j in range(seeds)
    ]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # (prompts * seeds, C, H, W), prompt-major
    labels = [short_label(prompt) for prompt in DEMO_PROMPTS for _ in range(seeds)]
    grid = save_grid(enlarge(images * 2 - 1, zoom), out_dir / "prompts.png", nrow=seeds, labels=labels)
    atomic_write_text(out_dir / "prompts.txt", "".join(f"{prompt}\n" for prompt in DEMO_PROMPTS))
    print(f"prompts: {grid} ({len(DEMO_PROMPTS)} prompts x {seeds} seeds, cfg {sampling['cfg']}; prompts.txt)")
    if EXAMPLE_SCENE.is_file() and EXAMPLE_CAPTION.is_file():
        path, prompt = text_edit(pipe, seed, sampling, zoom, out_dir / "text_edit.png")
        print(f"text editing: {path} (the top-left quadrant of a real held-out scene regenerated for '{prompt}')")


def edit_example_prompt() -> str:
    """The example scene's caption with a bag in the top-left quadrant (what the edit example asks for)."""
    from nextscale.data.scenes import caption_for, parse_caption

    layout = list(parse_caption(EXAMPLE_CAPTION.read_text().strip()))
    layout[EDIT_PLACE] = EDIT_ITEM
    return caption_for(layout)


def text_edit(pipe, seed: int, sampling: dict, zoom: int, path: Path) -> tuple[Path, str]:
    """Input with the region marked, then three results of the prompt that adds a bag in the top left."""
    import torch

    from nextscale.cli.demo import enlarge
    from nextscale.data.grids import save_grid
    from nextscale.data.image_reading import open_image
    from nextscale.sampling.editing import mask_overlay

    prompt = edit_example_prompt()
    out = pipe.inpaint(
        open_image(EXAMPLE_SCENE),
        box=QUADRANT_BOXES[EDIT_PLACE],
        prompt=prompt,
        num_images=3,
        seed=seed,
        output_type="pt",
        **sampling,
    )
    shown = out.prepared.tensor.to(out.images.device)
    panels = torch.cat([mask_overlay(shown, ~out.keep_mask), (out.images * 2 - 1).expand(-1, 3, -1, -1)])
    labels = ["input + region", *[short_label(prompt)] * 3]
    return save_grid(enlarge(panels, zoom), path, nrow=4, labels=labels), prompt
