"""The main job: sample a labelled grid and an editing example from the bundled model, in seconds on a CPU.

Examples:
    nextscale demo                                  # every class x 4 seeds, plus an inpainting example
    nextscale demo --class 0 9 --seeds 8 --cfg 4    # two classes, eight seeds each
    nextscale demo --train                          # retrain the bundled model from Fashion-MNIST, then sample
    nextscale demo --train text                     # retrain the text-to-image scene model (a GPU job), then sample

It also writes a prompt grid and a text-conditioned edit from the bundled text-to-image model (STAR on
64x64 Fashion-MNIST scenes, src/nextscale/assets/scenes/MODEL_CARD.md); --no-text skips them.

The bundled model is a VAR (multi-scale VQ-VAE + depth-4 next-scale transformer) trained by this project on
32x32 Fashion-MNIST; see src/nextscale/assets/demo/MODEL_CARD.md for the recipe and its metrics.
--train runs that recipe end to end (train-tokenizer -> tokenize -> train -> export) on the Debian
package dataset-fashion-mnist (or --data DIR with the IDX files) into --run-dir, then samples from the
new model. Re-running the same --train command resumes where it stopped. --train text runs the scene
model's recipe instead (make-scenes -> tokenize with the bundled scene tokenizer -> train -> export;
configs/fashion_scenes_transformer.json): 5.6 min on one H200, about 16 hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nextscale.cli.common import (
    BUNDLED_MODEL,
    add_classes_argument,
    add_dtype_argument,
    add_sampling_arguments,
    check_device,
    check_output_dir,
    check_sampling_flags,
    resolve_sampling,
)
from nextscale.cli.demo_text import BUNDLED_TEXT_MODEL, text_demo

EXAMPLES = BUNDLED_MODEL / "examples"
EDIT_TARGET = 9  # the bundled example is a sneaker (class 7); the class-conditional edit turns it towards "Ankle boot"
INPAINT_BOX = (0.25, 0.25, 0.75, 0.75)  # (y0, x0, y1, x1) fractions: regenerate the centre, keep the rest
EDIT_BOX = (0.0, 0.0, 0.75, 1.0)  # the upper three quarters: room for a boot's shaft; the sole is kept
MASKED_SAMPLING_HELP = (
    "is for the text half with a --text-model that has STAR's masked-sampler head (the official star-1024-sampler "
    "checkpoint); the bundled and retrained models have none, and class models never do"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="class-conditional pipeline folder, `nextscale train` run (its newest checkpoint), or "
        "bundled:fashion-mnist (the default)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("demo-output"), help="where the PNGs go (default: demo-output)"
    )
    add_classes_argument(parser, help="classes to show (default: all)")
    parser.add_argument("--seeds", type=int, default=4, help="samples per class, one seed each (default: 4)")
    parser.add_argument(
        "--zoom",
        type=int,
        default=2,
        help="enlarge every picture this many times (nearest neighbour) so small models are easy to see (default: 2)",
    )
    add_sampling_arguments(parser, cfg=3.0, unseeded="0: column j of a grid is drawn with seed + j")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_dtype_argument(parser)
    parser.add_argument("--no-text", action="store_true", help="skip the text-to-image grid and edit")
    parser.add_argument(
        "--text-model",
        type=Path,
        default=None,
        help="text-to-image pipeline folder, `nextscale train` run, or bundled:scenes (the default: the bundled "
        "scene model)",
    )
    training = parser.add_argument_group("retraining (--train)")
    training.add_argument(
        "--train",
        nargs="?",
        const="class",
        choices=("class", "text"),
        default=None,
        help="retrain a bundled model with its documented recipe: class (default) or text",
    )
    training.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: $NEXTSCALE_FASHION_MNIST or "
        "/usr/share/datasets/fashion-mnist)",
    )
    training.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="training runs, token shards and the exported model go here (default: runs/demo, runs/demo-text)",
    )


def run(args: argparse.Namespace) -> int:
    import copy
    import time

    import torch

    from nextscale.data.fashion_mnist import CLASS_NAMES
    from nextscale.data.grids import save_grid
    from nextscale.data.image_reading import open_image
    from nextscale.sampling.raster_pipeline import RasterPipeline

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if not 1 <= args.zoom <= 16:
        raise ValueError(f"--zoom must be between 1 and 16, got {args.zoom}")
    if args.no_text and args.text_model is not None:
        raise ValueError("--no-text skips the text half that --text-model is for; give one of them, not both")
    if args.no_text and args.train == "text":
        raise ValueError("--no-text skips the text half that --train text retrains; give one of them, not both")
    if args.train == "class" and args.model is not None:
        raise ValueError("--train retrains the class model that --model would name; give one of them, not both")
    if args.train == "text" and args.text_model is not None:
        raise ValueError("--train text retrains the text model that --text-model would name; give one of them")
    if args.train is None and (args.data is not None or args.run_dir is not None):
        raise ValueError("--data and --run-dir are for --train; without it the demo samples a trained model")
    check_output_dir(args.out_dir, "--out-dir")  # before any work
    check_device(args.device)
    check_sampling_flags(args)  # named by flag, and before a --train run that the bad value would waste
    want_text = not args.no_text
    # Given on the command line (left out, it is a Default): only the text half can use it, with a head.
    masked = args.masked_sampling is True
    if masked and (not want_text or args.train == "text"):
        raise ValueError(f"--masked-sampling {MASKED_SAMPLING_HELP}")
    # Load (and so check) every model that exists already before any training or sampling starts.
    if args.train == "class" and args.classes is not None:
        load_demo_pipeline(None, args, text=False).class_ids(args.classes)  # the retrained model's classes
    pipe = None if args.train == "class" else load_demo_pipeline(args.model, args, text=False)
    text_pipe = load_demo_pipeline(args.text_model, args, text=True) if want_text and args.train != "text" else None
    if masked and not getattr(text_pipe.transformer.config, "sampler_head", False):
        raise ValueError(f"--masked-sampling {MASKED_SAMPLING_HELP}")
    if args.train == "class":
        from nextscale.cli.demo_recipe import retrain

        pipe = load_demo_pipeline(retrain(args.run_dir or Path("runs/demo"), args.data), args, text=False)
    elif args.train == "text":
        from nextscale.cli.demo_recipe import retrain_text

        retrained = retrain_text(args.run_dir or Path("runs/demo-text"), args.data, BUNDLED_TEXT_MODEL / "tokenizer")
        text_pipe = load_demo_pipeline(retrained, args, text=True) if want_text else None
    started = time.perf_counter()
    if args.dtype != "fp32":
        print(f"sampling in {pipe.precision.name} ({pipe.precision.reason})")
    text_args = copy.copy(args)  # the text model resolves the flags left out with its own recommended settings
    resolve_sampling(args, pipe)
    names = pipe.class_names or (
        CLASS_NAMES if pipe.num_classes == len(CLASS_NAMES) else [str(i) for i in range(pipe.num_classes)]
    )
    classes = pipe.class_ids(args.classes) if args.classes is not None else list(range(pipe.num_classes))
    sampling = dict(cfg=args.cfg, top_k=args.top_k, top_p=args.top_p, temperature=args.temperature, smooth=args.smooth)
    sampling["cfg_schedule"] = args.cfg_schedule
    seed = 0 if args.seed is None else args.seed
    # one call per seed with every class in the batch: column j of the grid is seed + j
    columns = [
        pipe(class_labels=classes, seed=seed + j, output_type="pt", **sampling).images for j in range(args.seeds)
    ]
    images = torch.stack(columns, dim=1).flatten(0, 1)  # (classes * seeds, C, H, W), class-major
    labels = [names[c] for c in classes for _ in range(args.seeds)]
    grid = save_grid(enlarge(images * 2 - 1, args.zoom), args.out_dir / "samples.png", nrow=args.seeds, labels=labels)
    print(f"samples: {grid} ({len(classes)} classes x {args.seeds} seeds, cfg {args.cfg})")

    example = EXAMPLES / "example.png"
    if isinstance(pipe, RasterPipeline):
        print("editing: skipped (the raster-scan baseline cannot edit: it has no coarser scales to fix)")
    elif list(names) != list(CLASS_NAMES):  # the example is a sneaker, edited towards class 9 "Ankle boot"
        print("editing: skipped (the example is a Fashion-MNIST sneaker; this model's classes are others)")
    elif example.is_file():
        path = edit_example(pipe, open_image(example), names, seed, sampling, args.zoom, args.out_dir / "inpaint.png")
        print(
            f"editing: {path} (top: the centre of a real test sneaker inpainted; bottom: its upper part "
            f"edited towards '{names[EDIT_TARGET]}'; the red overlay marks what is regenerated)"
        )
    if text_pipe is not None:
        text_demo(text_pipe, text_args, seed)
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def load_demo_pipeline(name: str | Path | None, args: argparse.Namespace, text: bool):
    """The class (``--model``) or text (``--text-model``) pipeline: a folder, a `nextscale train` run or
    ``bundled:NAME``, of the right kind.

    ``None`` is the bundled model of that kind. Raises a one-line error naming the flag for a missing path,
    an unknown bundled name, or a model of the other kind.
    """
    from nextscale.cli.common import is_transformer_run, open_pipeline
    from nextscale.pretrained import resolve_model_path

    flag, other = ("--text-model", "--model") if text else ("--model", "--text-model")
    kind, other_kind = ("text-to-image", "class-conditional") if text else ("class-conditional", "text-to-image")
    default = "bundled:scenes" if text else "bundled:fashion-mnist"
    shown = default if name is None else name
    try:
        path = resolve_model_path(default if name is None else name)
    except FileNotFoundError as err:  # an unknown bundled:NAME; the error lists the known ones
        raise FileNotFoundError(f"{flag}: {err}") from err
    if not path.exists():
        if name is None:
            skip = ", or --no-text to skip the text half" if text else ""
            raise FileNotFoundError(f"the bundled model {default} is missing at {path}; pass {flag} DIR{skip}")
        raise FileNotFoundError(f"{flag} {name} not found; give a {kind} pipeline folder or {default}")
    run = is_transformer_run(path)  # sampled from its newest checkpoint, as `sample --model RUN` does
    if not run and not (path / "pipeline.json").is_file():
        raise FileNotFoundError(
            f"{flag} {shown} is not a pipeline folder (no pipeline.json) or `nextscale train` run; give a {kind} "
            f"pipeline folder (see `nextscale export`, `nextscale convert`), a training run or {default}"
        )
    wrong_kind = ValueError(
        f"{flag} {shown} is a {other_kind} model, but {flag} takes a {kind} one (default {default}); "
        f"give it as {other} {shown} instead"
    )
    if recorded_as_text(path) not in (None, text):  # refused before its weights (and a text encoder) load
        raise wrong_kind
    pipe = open_pipeline(path, args.device, args.dtype, args.cuda_graphs, args.fused_kernels)
    if pipe.is_text_conditional != text:
        raise wrong_kind
    return pipe


def recorded_as_text(path: Path) -> bool | None:
    """Whether a pipeline folder's pipeline.json (or a training run's config.json) names a text-to-image model
    class; None when it cannot tell (loading it then names what is wrong with the folder)."""
    import json

    from nextscale.sampling.pipeline_folder import PIPELINE_CLASSES
    from nextscale.sampling.text_pipeline import TextPipeline

    try:
        if not (path / "pipeline.json").is_file():  # a `nextscale train` run
            return json.loads((path / "config.json").read_text()).get("model_class") == "TextScaleTransformer"
        name = json.loads((path / "pipeline.json").read_text()).get("_class_name", "Pipeline")
    except (OSError, ValueError, AttributeError):
        return None
    return issubclass(PIPELINE_CLASSES[name], TextPipeline) if name in PIPELINE_CLASSES else None


def enlarge(images, zoom: int):
    """Nearest-neighbour upscaling of (B, C, H, W) pictures for viewing; zoom 1 returns them unchanged."""
    import torch.nn.functional as F

    return images if zoom == 1 else F.interpolate(images, scale_factor=zoom, mode="nearest")


def edit_example(pipe, source, names, seed: int, sampling: dict, zoom: int, path: Path) -> Path:
    """Two rows: region overlay + three inpaintings of the centre; region overlay + three class-conditional edits."""
    import torch

    from nextscale.data.grids import save_grid
    from nextscale.sampling.editing import mask_overlay

    inpainted = pipe.inpaint(source, box=INPAINT_BOX, num_images=3, seed=seed, output_type="pt", **sampling)
    edited = pipe.inpaint(
        source, box=EDIT_BOX, class_label=EDIT_TARGET, num_images=3, seed=seed, output_type="pt", **sampling
    )
    shown = inpainted.prepared.tensor.to(inpainted.images.device)

    def rgb(images):
        return images.expand(-1, 3, -1, -1)

    panels = torch.cat(
        [
            mask_overlay(shown, ~inpainted.keep_mask),
            rgb(inpainted.images * 2 - 1),
            mask_overlay(shown, ~edited.keep_mask),
            rgb(edited.images * 2 - 1),
        ]
    )
    labels = ["input + region", "inpaint", "inpaint", "inpaint", "input + region", *[names[EDIT_TARGET]] * 3]
    return save_grid(enlarge(panels, zoom), path, nrow=4, labels=labels)
