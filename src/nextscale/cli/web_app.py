"""The gradio app behind ``nextscale serve``: class -> image, text -> image and editing tabs in a browser.

Each tab's button calls a plain handler (``sample_classes``, ``sample_prompts``, ``edit_image``,
``edit_image_with_text``) that takes the
served models first and the widget values after, so tests call them directly. All model calls go through the
public ``Pipeline`` API (``pipe(...)`` and ``pipe.edit(...)``), grids come from ``data.images.make_grid``, and
every user error (no class chosen, an empty prompt, too many images, an unreadable image, a bad box, a
``ValueError`` from the pipeline) becomes a ``gradio.Error`` (``UserError``) with one line, which the page shows
instead of a traceback.

This module imports gradio at the top: only ``nextscale serve`` imports it, after checking that gradio is
installed (it is the optional ``demo`` extra).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image

from nextscale.cli import is_out_of_memory, one_line
from nextscale.cli.demo import EXAMPLES, INPAINT_BOX, enlarge

if TYPE_CHECKING:
    from nextscale.sampling.pipeline import Pipeline
    from nextscale.sampling.text_pipeline import TextPipeline

DISPLAY_SIDE = 128  # tiles are enlarged (nearest neighbour) to at least this many pixels, so 32 px models are visible
UNCONDITIONAL = "(none: unconditional)"
# The demo's settings when a model records no recommended ones (``nextscale demo`` uses cfg 3 too).
DEFAULT_SAMPLING = {"cfg": 3.0, "top_k": None, "top_p": None, "temperature": 1.0}
LABEL_CHARACTERS = 24  # prompt labels under grid tiles are cut to this length so that cells stay narrow


@dataclass
class ServedModels:
    """What the handlers serve: the class pipeline, the text pipeline (None: no text tab) and the per-request cap.

    ``lock`` lets one model call run at a time: a pipeline keeps its KV cache and CPU memory between calls, so
    two calls on it at once are not safe, and two calls on different pipelines would only share the same cores.
    """

    class_pipeline: Pipeline
    text_pipeline: TextPipeline | None = None
    max_images: int = 64
    lock: threading.Lock = field(default_factory=threading.Lock)


# ------------------------------------------------------------------------------------------ input checks
class UserError(gr.Error):
    """A request the user can fix: shown in the page as one line, and not logged with a traceback by the server."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.print_exception = False  # read by gradio's queue; the default logs every error's traceback


@contextmanager
def shown_in_the_page() -> Iterator[None]:
    """Turn the pipeline's user errors into ``gradio.Error`` (one line in the page, no traceback)."""
    try:
        yield
    except gr.Error:  # already one line for the page (and a ValueError in gradio >= 5)
        raise
    except (ValueError, TypeError, OSError) as err:
        raise UserError(one_line(err)) from err
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        raise UserError("out of memory: ask for fewer images per request") from err


def check_image_count(count: int, max_images: int, fix: str) -> None:
    if count > max_images:
        raise UserError(f"{count} images asked for, but this server makes at most {max_images} per request: {fix}")


@dataclass(frozen=True)
class Knobs:
    """The sampling widgets' values, in the order every tab lays them out (its last six inputs)."""

    seed: int | None = 0
    cfg: float = DEFAULT_SAMPLING["cfg"]
    top_k: int | None = None
    top_p: float | None = None
    temperature: float = 1.0
    smooth: bool = False

    def settings(self) -> dict:
        """Pipeline keyword arguments: an empty top-k / top-p is off, an empty seed a random one (reported in the
        status line so that the result can be made again)."""
        return dict(
            seed=secrets.randbelow(2**31) if self.seed is None else int(self.seed),
            cfg=float(self.cfg),
            top_k=None if self.top_k is None else int(self.top_k),
            top_p=None if self.top_p is None else float(self.top_p),
            temperature=float(self.temperature),
            smooth=bool(self.smooth),
        )


KNOB_COUNT = len(fields(Knobs))


def class_choices(pipe: Pipeline) -> list[str]:
    """The names the class dropdowns offer: the model's class names, else the ids as text."""
    return list(pipe.class_names) if pipe.class_names else [str(index) for index in range(pipe.num_classes)]


def class_id(pipe: Pipeline, choice: str) -> int:
    choices = class_choices(pipe)
    if choice not in choices:
        raise UserError(f"unknown class {choice!r}: pick one from the list")
    return choices.index(choice)


def display_zoom(pipe: Pipeline) -> int:
    return max(1, DISPLAY_SIDE // pipe.image_size)


def status_line(count: int, started: float, pipe: Pipeline, seed: int) -> str:
    seconds = time.perf_counter() - started
    return f"{count} image{'s' if count != 1 else ''} in {seconds:.1f} s ({pipe.precision.name}, seed {seed})"


def short_label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 3] + "..."


# ---------------------------------------------------------------------------------------------- handlers
def sample_classes(
    models: ServedModels,
    classes: list[str] | None,
    images_per_class: int,
    knobs: Knobs = Knobs(),
) -> tuple[Image.Image, str]:
    """Class tab: one row per chosen class, ``images_per_class`` columns, labelled with the class names.

    Returns:
        (the grid as a PIL image, a status line: count, seconds, precision and seed).
    """
    from nextscale.data.images import make_grid

    pipe = models.class_pipeline
    if not classes:
        raise UserError("no class chosen: pick at least one class from the list")
    per_class = int(images_per_class)
    if per_class < 1:
        raise UserError(f"images per class must be at least 1, got {per_class}")
    check_image_count(len(classes) * per_class, models.max_images, "choose fewer classes or images per class")
    labels = [class_id(pipe, choice) for choice in classes]
    settings = knobs.settings()
    started = time.perf_counter()
    with shown_in_the_page(), models.lock:
        out = pipe(class_labels=labels, num_images_per_prompt=per_class, output_type="pt", **settings)
    names = [choice for choice in classes for _ in range(per_class)]  # class-major, as the pipeline repeats them
    grid = make_grid(enlarge(out.images * 2 - 1, display_zoom(pipe)), nrow=per_class, labels=names)
    return grid, status_line(len(names), started, pipe, settings["seed"])


def sample_prompts(
    models: ServedModels,
    prompts: str,
    negative_prompt: str,
    images_per_prompt: int,
    knobs: Knobs = Knobs(),
) -> tuple[Image.Image, str]:
    """Text tab: one row per prompt (one prompt per line of ``prompts``), ``images_per_prompt`` columns.

    An empty ``negative_prompt`` means the empty prompt (the model's unconditional input).
    """
    from nextscale.data.images import make_grid

    pipe = models.text_pipeline
    if pipe is None:
        raise UserError("this server has no text model: start it with --text-model DIR")
    lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if not lines:
        raise UserError("the prompt is empty: write at least one prompt, one per line")
    per_prompt = int(images_per_prompt)
    if per_prompt < 1:
        raise UserError(f"images per prompt must be at least 1, got {per_prompt}")
    check_image_count(len(lines) * per_prompt, models.max_images, "write fewer prompts or ask for fewer images each")
    negative = (negative_prompt or "").strip()
    settings = knobs.settings()
    started = time.perf_counter()
    with shown_in_the_page(), models.lock:
        out = pipe(
            prompt=lines,
            negative_prompt=[negative] if negative else None,
            num_images_per_prompt=per_prompt,
            output_type="pt",
            **settings,
        )
    labels = [short_label(line) for line in lines for _ in range(per_prompt)]
    grid = make_grid(enlarge(out.images * 2 - 1, display_zoom(pipe)), nrow=per_prompt, labels=labels)
    return grid, status_line(len(labels), started, pipe, settings["seed"])


def edit_image(
    models: ServedModels,
    image_path: str | None,
    y0: float,
    x0: float,
    y1: float,
    x1: float,
    mode: str = "inpaint",
    target: str = UNCONDITIONAL,
    num_results: int = 1,
    knobs: Knobs = Knobs(),
) -> tuple[Image.Image, str]:
    """Edit tab: inpaint or outpaint the box (y0 x0 y1 x1 fractions, as ``nextscale edit --box``) of an image
    with the class model, towards ``target`` (a class name, or unconditional).

    Returns:
        (input | input with the regenerated region tinted red | results, side by side; a status line).
    """
    pipe = models.class_pipeline
    class_label = None if target in (None, UNCONDITIONAL) else class_id(pipe, target)
    return run_edit(models, pipe, image_path, (y0, x0, y1, x1), mode, num_results, knobs, class_label=class_label)


def edit_image_with_text(
    models: ServedModels,
    image_path: str | None,
    y0: float,
    x0: float,
    y1: float,
    x1: float,
    mode: str = "inpaint",
    prompt: str = "",
    num_results: int = 1,
    knobs: Knobs = Knobs(),
) -> tuple[Image.Image, str]:
    """Text edit tab: as :func:`edit_image` with the text model, towards ``prompt`` (the whole picture's
    caption, as the model was trained on; empty: the empty prompt)."""
    pipe = models.text_pipeline
    if pipe is None:
        raise UserError("this server has no text model: start it with --text-model DIR")
    text = " ".join((prompt or "").split()) or None
    return run_edit(models, pipe, image_path, (y0, x0, y1, x1), mode, num_results, knobs, prompt=text)


def run_edit(
    models: ServedModels,
    pipe: Pipeline,
    image_path: str | None,
    box: tuple[float, float, float, float],
    mode: str,
    num_results: int,
    knobs: Knobs,
    **target,
) -> tuple[Image.Image, str]:
    """Check the request, edit under the lock and lay out input | region | results (both edit tabs)."""
    from nextscale.data.images import make_grid, open_image

    y0, x0, y1, x1 = box
    if not image_path:
        raise UserError("no image: upload one (PNG, JPEG or WebP)")
    if not y0 < y1 or not x0 < x1:
        raise UserError(
            f"empty box (y0 {y0:g}, x0 {x0:g}, y1 {y1:g}, x1 {x1:g}): move the sliders so that y0 < y1 and x0 < x1"
        )
    count = int(num_results)
    if count < 1:
        raise UserError(f"number of results must be at least 1, got {count}")
    check_image_count(count, models.max_images, "ask for fewer results")
    settings = knobs.settings()
    started = time.perf_counter()
    with shown_in_the_page():
        image = open_image(image_path)  # a ValueError that names the file when it is not an image
        with models.lock:
            out = pipe.edit(image, mode=mode, box=box, num_images=count, output_type="pt", **target, **settings)
    pictures, labels = out.side_by_side()
    grid = make_grid(enlarge(pictures, display_zoom(pipe)), nrow=len(labels), labels=labels)
    return grid, status_line(count, started, pipe, settings["seed"])


# --------------------------------------------------------------------------------------------------- app
def recommended(pipe: Pipeline) -> dict:
    """The knobs' starting values: the model's recommended sampling settings over the demo's defaults."""
    return {**DEFAULT_SAMPLING, **(getattr(pipe, "recommended_sampling", None) or {})}


def sampling_widgets(pipe: Pipeline) -> list:
    """seed, cfg, top-k, top-p, temperature and smooth widgets, in the order of the fields of :class:`Knobs`."""
    start = recommended(pipe)
    with gr.Accordion("sampling", open=False):
        with gr.Row():
            seed = gr.Number(value=0, precision=0, label="seed (empty: random)")
            cfg = gr.Slider(0.0, 10.0, value=start["cfg"], step=0.1, label="cfg (0: off)")
            temperature = gr.Slider(0.1, 3.0, value=start["temperature"], step=0.05, label="temperature")
        with gr.Row():
            top_k = gr.Number(value=start["top_k"], precision=0, label="top-k (empty: off)")
            top_p = gr.Number(value=start["top_p"], label="top-p in (0, 1] (empty: off)")
            smooth = gr.Checkbox(value=False, label="smooth (Gumbel mixture of codes)")
    return [seed, cfg, top_k, top_p, temperature, smooth]


def result_widgets() -> list:
    image = gr.Image(label="result", type="pil", format="png", interactive=False)
    status = gr.Textbox(label="status", interactive=False)
    return [image, status]


def slider_up_to(maximum: int, value: int, max_images: int, label: str):
    """An image-count slider from 1 to ``maximum``, never past the server's per-request cap."""
    top = min(maximum, max_images)
    return gr.Slider(1, top, value=min(value, top), step=1, label=label)


def bind(handler, models: ServedModels):
    """``handler`` with the served models filled in and the last six widget values (the sampling knobs) folded
    into :class:`Knobs`, under the handler's own name (gradio's API names)."""

    def bound(*values):
        return handler(models, *values[:-KNOB_COUNT], Knobs(*values[-KNOB_COUNT:]))

    bound.__name__ = bound.__qualname__ = handler.__name__
    bound.__doc__ = handler.__doc__
    return bound


def class_tab(models: ServedModels) -> None:
    pipe = models.class_pipeline
    with gr.Tab("Class → image", id="class"):
        choices = class_choices(pipe)
        classes = gr.Dropdown(choices, value=choices[: min(4, len(choices))], multiselect=True, label="classes")
        per_class = slider_up_to(16, 4, models.max_images, "images per class")
        knobs = sampling_widgets(pipe)
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    button.click(bind(sample_classes, models), [classes, per_class, *knobs], outputs, api_name="sample_classes")


def text_tab(models: ServedModels) -> None:
    pipe = models.text_pipeline
    with gr.Tab("Text → image", id="text"):
        prompts = gr.Textbox(lines=4, label="prompts (one per line)", value=example_prompts())
        negative = gr.Textbox(label="negative prompt (empty: the empty prompt)")
        per_prompt = slider_up_to(16, 2, models.max_images, "images per prompt")
        knobs = sampling_widgets(pipe)
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    button.click(
        bind(sample_prompts, models), [prompts, negative, per_prompt, *knobs], outputs, api_name="sample_prompts"
    )


def example_prompts() -> str:
    """The bundled scene model's demo prompts (captions of the kind it was trained on)."""
    from nextscale.cli.demo_text import DEMO_PROMPTS

    return "\n".join(DEMO_PROMPTS[:2])


def example_image(pipe: Pipeline) -> str | None:
    """The bundled real test image, offered when the class model is a 10-class one like the bundled model."""
    from nextscale.data.fashion_mnist import CLASS_NAMES

    path = EXAMPLES / "example.png"
    return str(path) if pipe.num_classes == len(CLASS_NAMES) and path.is_file() else None


def region_widgets(box: tuple[float, float, float, float]) -> list:
    """The y0 x0 y1 x1 sliders (fractions, as ``nextscale edit --box``) and the inpaint / outpaint choice."""
    sliders = [
        gr.Slider(0.0, 1.0, value=value, step=0.05, label=f"{name} (fraction)")
        for name, value in zip(("y0", "x0", "y1", "x1"), box)
    ]
    mode = gr.Radio(
        ["inpaint", "outpaint"],
        value="inpaint",
        label="mode",
        info="inpaint regenerates the box; outpaint keeps it and regenerates the rest",
    )
    return [*sliders, mode]


def edit_tab(models: ServedModels) -> None:
    pipe = models.class_pipeline
    with gr.Tab("Edit", id="edit"):
        with gr.Row():
            image = gr.Image(value=example_image(pipe), type="filepath", label="image (any size: center-cropped)")
            with gr.Column():
                region = region_widgets(INPAINT_BOX)
                target = gr.Dropdown([UNCONDITIONAL, *class_choices(pipe)], value=UNCONDITIONAL, label="target class")
                num_results = slider_up_to(8, 3, models.max_images, "results")
        knobs = sampling_widgets(pipe)
        button = gr.Button("Edit", variant="primary")
        outputs = result_widgets()
    inputs = [image, *region, target, num_results, *knobs]
    button.click(bind(edit_image, models), inputs, outputs, api_name="edit_image")


def text_edit_tab(models: ServedModels) -> None:
    from nextscale.cli.demo_text import EDIT_PLACE, EXAMPLE_SCENE, QUADRANT_BOXES, edit_example_prompt

    pipe = models.text_pipeline
    example = EXAMPLE_SCENE if EXAMPLE_SCENE.is_file() else None
    with gr.Tab("Edit with text", id="text-edit"):
        with gr.Row():
            image = gr.Image(value=example, type="filepath", label="image (any size: center-cropped)")
            with gr.Column():
                region = region_widgets(QUADRANT_BOXES[EDIT_PLACE])
                prompt = gr.Textbox(
                    value=edit_example_prompt() if example else "",
                    label="prompt: the whole edited picture's caption (empty: the empty prompt)",
                )
                num_results = slider_up_to(8, 3, models.max_images, "results")
        knobs = sampling_widgets(pipe)
        button = gr.Button("Edit", variant="primary")
        outputs = result_widgets()
    inputs = [image, *region, prompt, num_results, *knobs]
    button.click(bind(edit_image_with_text, models), inputs, outputs, api_name="edit_image_with_text")


def build_app(class_pipeline: Pipeline, text_pipeline: TextPipeline | None = None, max_images: int = 64) -> gr.Blocks:
    """The web demo: tabs "Class → image", "Text → image", "Edit" and "Edit with text" (the text tabs only with a
    text pipeline).

    Args:
        class_pipeline: a class-conditional ``Pipeline``.
        text_pipeline: a ``TextPipeline``, or None for no text tab.
        max_images: the most images one request may ask for.
    Returns:
        the unlaunched ``gradio.Blocks``; ``app.launch(...)`` serves it.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    models = ServedModels(class_pipeline, text_pipeline, max_images)
    with gr.Blocks(title="nextscale", analytics_enabled=False) as app:
        gr.Markdown("# nextscale: next-scale image generation (VAR / STAR)")
        with gr.Tabs():
            class_tab(models)
            if text_pipeline is not None:
                text_tab(models)
            edit_tab(models)
            if text_pipeline is not None:
                text_edit_tab(models)
    return app
