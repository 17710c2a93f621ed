"""The gradio app behind ``nextscale serve``: class -> image, text -> image and editing tabs in a browser.

Each tab's button calls a plain handler (``sample_classes``, ``sample_prompts``, ``edit_image``,
``edit_image_with_text``) that takes the
served models first and the widget values after, so tests call them directly. All model calls go through the
public ``Pipeline`` API (``pipe(...)`` and ``pipe.edit(...)``), grids come from ``data.images.make_grid``, and
every user error (no class chosen, an empty prompt, too many images, an unreadable image, a bad box, a
``ValueError`` from the pipeline) becomes a ``gradio.Error`` (``UserError``) with one line, which the page shows
instead of a traceback.

The form's values follow the page, not the library: gradio shows an empty number box as 0 once its accordion is
opened and then sends 0, so 0 (or empty) turns top-k and top-p off here, where the library wants None.

This module imports gradio at the top: only ``nextscale serve`` imports it, after checking that gradio is
installed (it is the optional ``demo`` extra).
"""

from __future__ import annotations

import math
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
from nextscale.cli.sample import scale_grid
from nextscale.sampling.pipeline import SEED_RANGE

if TYPE_CHECKING:
    from gradio.data_classes import ImageData

    from nextscale.sampling.pipeline import Pipeline
    from nextscale.sampling.text_pipeline import TextPipeline

DISPLAY_SIDE = 128  # tiles are enlarged (nearest neighbour) to at least this many pixels, so 32 px models are visible
UNCONDITIONAL = "(none: unconditional)"
# The demo's settings when a model records no recommended ones (``nextscale demo`` uses cfg 3 too).
DEFAULT_SAMPLING = {"cfg": 3.0, "top_k": None, "top_p": None, "temperature": 1.0}
LABEL_CHARACTERS = 24  # prompt labels under grid tiles are cut to this length so that cells stay narrow
WAIT_WORTH_SAYING = 0.5  # seconds queued behind other requests from which the status line mentions the wait
# Pillow signals an unreadable, truncated or oversized image with one of these.
IMAGE_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# The editing library's error when the box and mode keep no token: plain sampling, which another tab does.
KEEPS_NOTHING = "keeps nothing of the image"


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


def whole_number(value: float | None, name: str) -> int:
    """``value`` as an int, refusing what ``int()`` would round without a word (2.5) or fail on (NaN, inf, empty)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float) or not math.isfinite(value) or value != round(value):
        raise UserError(f"{name} must be a whole number, got {value}")
    return int(value)


def image_count(value: float | None, name: str) -> int:
    count = whole_number(value, name)
    if count < 1:
        raise UserError(f"{name} must be at least 1, got {count}")
    return count


def finite_number(value: float | None, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a number, got {value}")
    return float(value)


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
        """Pipeline keyword arguments, checked in the form's terms: top-k / top-p of 0 or empty are off (None to
        the library, for which 0 is an error), an empty seed is a random one (reported in the status line so that
        the result can be made again)."""
        if self.seed is None:
            seed = secrets.randbelow(2**31)
        else:
            seed = whole_number(self.seed, "seed")
            if not SEED_RANGE[0] <= seed < SEED_RANGE[1]:  # what torch.Generator.manual_seed takes
                raise UserError(f"seed must be between -2**63 and 2**64 - 1, got {self.seed}: choose one in that range")
        top_k = None if self.top_k in (None, 0) else whole_number(self.top_k, "top-k")
        if top_k is not None and top_k < 0:
            raise UserError(f"top-k must be at least 1, or 0 or empty for off; got {top_k}")
        top_p = None if self.top_p in (None, 0) else finite_number(self.top_p, "top-p")
        if top_p is not None and not 0 < top_p <= 1:
            raise UserError(f"top-p must be in (0, 1], or 0 or empty for off; got {top_p:g}")
        return dict(
            seed=seed,
            cfg=finite_number(self.cfg, "cfg"),
            top_k=top_k,
            top_p=top_p,
            temperature=finite_number(self.temperature, "temperature"),
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


@dataclass
class Timing:
    """When a request's own work began, and how long it queued for the model lock before that."""

    started: float = 0.0
    waited: float = 0.0


@contextmanager
def turn(models: ServedModels) -> Iterator[Timing]:
    """Hold the model lock for one request; the clock starts once it is held, so that the status line's time is
    this request's work and not another user's."""
    queued = time.perf_counter()
    with models.lock:
        timing = Timing(started=time.perf_counter())
        timing.waited = timing.started - queued
        yield timing


def status_line(count: int, timing: Timing, pipe: Pipeline, seed: int) -> str:
    seconds = time.perf_counter() - timing.started
    line = f"{count} image{'s' if count != 1 else ''} in {seconds:.1f} s"
    if timing.waited >= WAIT_WORTH_SAYING:
        line += f", after {timing.waited:.1f} s waiting for other requests"
    return f"{line} ({pipe.precision.name}, seed {seed})"


def short_label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 3] + "..."


# ---------------------------------------------------------------------------------------------- handlers
def sample_classes(
    models: ServedModels,
    classes: list[str] | None,
    images_per_class: int,
    knobs: Knobs = Knobs(),
    coarse_to_fine: bool = False,
) -> tuple[Image.Image, str]:
    """Class tab: one row per chosen class, ``images_per_class`` columns, labelled with the class names (with
    ``coarse_to_fine``: one row per image, one column per scale, see ``cli.sample.scale_grid``).

    Returns:
        (the grid as a PIL image, a status line: count, seconds, precision and seed).
    """
    from nextscale.data.images import make_grid

    pipe = models.class_pipeline
    if not classes:
        raise UserError("no class chosen: pick at least one class from the list")
    per_class = image_count(images_per_class, "images per class")
    check_image_count(len(classes) * per_class, models.max_images, "choose fewer classes or images per class")
    labels = [class_id(pipe, choice) for choice in classes]
    settings = knobs.settings()
    names = [choice for choice in classes for _ in range(per_class)]  # class-major, as the pipeline repeats them
    with shown_in_the_page(), turn(models) as timing:
        out = pipe(class_labels=labels, num_images_per_prompt=per_class, output_type="pt", **settings)
        # its decoder passes are model work too: under the lock
        grid = scale_grid(pipe, out.tokens, names, display_zoom(pipe)) if coarse_to_fine else None
    if grid is None:
        grid = make_grid(enlarge(out.images * 2 - 1, display_zoom(pipe)), nrow=per_class, labels=names)
    return grid, status_line(len(names), timing, pipe, settings["seed"])


def sample_prompts(
    models: ServedModels,
    prompts: str,
    negative_prompt: str,
    images_per_prompt: int,
    knobs: Knobs = Knobs(),
    coarse_to_fine: bool = False,
) -> tuple[Image.Image, str]:
    """Text tab: one row per prompt (one prompt per line of ``prompts``), ``images_per_prompt`` columns (with
    ``coarse_to_fine``: one row per image, one column per scale).

    An empty ``negative_prompt`` means the empty prompt (the model's unconditional input).
    """
    from nextscale.data.images import make_grid

    pipe = models.text_pipeline
    if pipe is None:
        raise UserError("this server has no text model: start it with --text-model DIR")
    lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if not lines:
        raise UserError("the prompt is empty: write at least one prompt, one per line")
    per_prompt = image_count(images_per_prompt, "images per prompt")
    check_image_count(len(lines) * per_prompt, models.max_images, "write fewer prompts or ask for fewer images each")
    negative = (negative_prompt or "").strip()
    settings = knobs.settings()
    labels = [short_label(line) for line in lines for _ in range(per_prompt)]
    with shown_in_the_page(), turn(models) as timing:
        out = pipe(
            prompt=lines,
            negative_prompt=[negative] if negative else None,
            num_images_per_prompt=per_prompt,
            output_type="pt",
            **settings,
        )
        # its decoder passes are model work too: under the lock
        grid = scale_grid(pipe, out.tokens, labels, display_zoom(pipe)) if coarse_to_fine else None
    if grid is None:
        grid = make_grid(enlarge(out.images * 2 - 1, display_zoom(pipe)), nrow=per_prompt, labels=labels)
    return grid, status_line(len(labels), timing, pipe, settings["seed"])


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
    box = (y0, x0, y1, x1)
    return run_edit(models, pipe, image_path, box, mode, num_results, knobs, "Class → image", class_label=class_label)


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
    return run_edit(models, pipe, image_path, (y0, x0, y1, x1), mode, num_results, knobs, "Text → image", prompt=text)


def run_edit(
    models: ServedModels,
    pipe: Pipeline,
    image_path: str | None,
    box: tuple[float, float, float, float],
    mode: str,
    num_results: int,
    knobs: Knobs,
    sampling_tab: str,
    **target,
) -> tuple[Image.Image, str]:
    """Check the request, edit under the lock and lay out input | region | results (both edit tabs).
    ``sampling_tab`` names the tab that samples with the same model, for a box that keeps nothing."""
    from nextscale.data.images import make_grid, open_image

    y0, x0, y1, x1 = box
    if not image_path:
        raise UserError("no image: upload one (PNG, JPEG or WebP)")
    if not y0 < y1 or not x0 < x1:
        raise UserError(
            f"empty box (y0 {y0:g}, x0 {x0:g}, y1 {y1:g}, x1 {x1:g}): move the sliders so that y0 < y1 and x0 < x1"
        )
    count = image_count(num_results, "number of results")
    check_image_count(count, models.max_images, "ask for fewer results")
    settings = knobs.settings()
    with shown_in_the_page():
        try:  # a truncated file passes the widget's check (it reads the header) and fails here, on decoding
            image = open_image(image_path)
        except ValueError as err:
            reason = str(err.__cause__ or err)
            raise UserError(f"cannot read the uploaded image ({reason}); it is corrupt or not an image") from err
        with turn(models) as timing:
            try:
                out = pipe.edit(image, mode=mode, box=box, num_images=count, output_type="pt", **target, **settings)
            except ValueError as err:  # the library's wording points to the `sample` command, not to a tab
                if KEEPS_NOTHING not in str(err):
                    raise
                resize = "shrink" if mode == "inpaint" else "enlarge"
                raise UserError(
                    f"this box and mode keep nothing of the image, which is plain sampling: use the {sampling_tab} "
                    f"tab, or {resize} the box"
                ) from err
    pictures, labels = out.side_by_side()
    grid = make_grid(enlarge(pictures, display_zoom(pipe)), nrow=len(labels), labels=labels)
    return grid, status_line(count, timing, pipe, settings["seed"])


# ----------------------------------------------------------------------------------------------- widgets
def image_upload(value: str | None) -> gr.Image:
    """The edit tabs' image input, whose unreadable uploads are one line in the page. gradio opens (and may
    convert) the file in the widget's own preprocessing, before any handler runs, and Pillow's errors there would
    show only a bare "Error" and log a traceback. The widget's preprocess is wrapped on the instance because
    subclassing a gradio widget makes gradio write a .pyi stub next to this module at import."""
    # image_mode=None: gradio hands over the uploaded file itself instead of an 8-bit RGB copy, so 16-bit, alpha
    # and palette images reach the pipeline's own reader (which keeps 16-bit gray levels; RGB clipped them).
    image = gr.Image(value=value, type="filepath", image_mode=None, label="image (any size: center-cropped)")
    decode = image.preprocess

    def preprocess(payload: ImageData | None) -> str | None:
        try:
            return decode(payload)
        except gr.Error:
            raise
        except IMAGE_READ_ERRORS as err:
            name, reason = payload.orig_name or "", one_line(err)
            if payload.path and name:  # the upload's name, not gradio's cache path
                reason = reason.replace(str(payload.path), name)
            raise UserError(f"cannot read the uploaded image {name} ({reason}); it is corrupt or not an image") from err

    image.preprocess = preprocess
    return image


# --------------------------------------------------------------------------------------------------- app
def recommended(pipe: Pipeline) -> dict:
    """The knobs' starting values: the model's recommended sampling settings over the demo's defaults."""
    return {**DEFAULT_SAMPLING, **(getattr(pipe, "recommended_sampling", None) or {})}


def sampling_widgets(pipe: Pipeline, cfg_info: str | None = None) -> list:
    """seed, cfg, top-k, top-p, temperature and smooth widgets, in the order of the fields of :class:`Knobs`.
    ``cfg_info`` is a note under the cfg slider."""
    start = recommended(pipe)
    with gr.Accordion("sampling", open=False):
        with gr.Row():
            # no precision=0 on the whole-number boxes: gradio would round 2.5 to 2 without a word and fail on
            # NaN with a bare "Error"; Knobs.settings refuses both in one line
            seed = gr.Number(value=0, label="seed (empty: random)")
            cfg = gr.Slider(0.0, 10.0, value=start["cfg"], step=0.1, label="cfg (0: off)", info=cfg_info)
            temperature = gr.Slider(0.1, 3.0, value=start["temperature"], step=0.05, label="temperature")
        with gr.Row():
            # the page shows an empty box as 0 and sends 0: both mean off (Knobs.settings)
            top_k = gr.Number(value=start["top_k"], label="top-k (0 or empty: off)")
            top_p = gr.Number(value=start["top_p"], label="top-p in (0, 1] (0 or empty: off)")
            smooth = gr.Checkbox(value=False, label="smooth (Gumbel mixture of codes)")
    return [seed, cfg, top_k, top_p, temperature, smooth]


def result_widgets() -> list:
    image = gr.Image(label="result", type="pil", format="png", interactive=False)
    status = gr.Textbox(label="status", interactive=False)
    return [image, status]


def slider_up_to(maximum: int, value: int, max_images: int, label: str) -> gr.Slider | gr.Number:
    """An image-count slider from 1 to ``maximum``, never past the server's per-request cap (a fixed 1 under
    ``--max-images 1``, as gradio refuses a slider from 1 to 1)."""
    top = min(maximum, max_images)
    if top == 1:
        return gr.Number(value=1, interactive=False, label=label)
    return gr.Slider(1, top, value=min(value, top), step=1, label=label)


def bind(handler, models: ServedModels, after_knobs: int = 0):
    """``handler`` with the served models filled in and the six widget values of the sampling knobs (the last ones
    but ``after_knobs``) folded into :class:`Knobs`, under the handler's own name (gradio's API names)."""

    def bound(*values):
        end = len(values) - after_knobs
        return handler(models, *values[: end - KNOB_COUNT], Knobs(*values[end - KNOB_COUNT : end]), *values[end:])

    bound.__name__ = bound.__qualname__ = handler.__name__
    bound.__doc__ = handler.__doc__
    return bound


def starting_grid(rows: int, columns: int, max_images: int) -> tuple[int, int]:
    """At most ``rows`` x ``columns``, cut to fit the per-request cap, so that the first click works as it is."""
    rows = max(1, min(rows, max_images))
    return rows, max(1, min(columns, max_images // rows))


def class_tab(models: ServedModels) -> None:
    pipe = models.class_pipeline
    with gr.Tab("Class → image", id="class"):
        choices = class_choices(pipe)
        rows, columns = starting_grid(min(4, len(choices)), 4, models.max_images)
        classes = gr.Dropdown(choices, value=choices[:rows], multiselect=True, label="classes")
        per_class = slider_up_to(16, columns, models.max_images, "images per class")
        knobs = sampling_widgets(pipe)
        view = coarse_to_fine_widget()
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    inputs = [classes, per_class, *knobs, view]
    button.click(bind(sample_classes, models, after_knobs=1), inputs, outputs, api_name="sample_classes")


def text_tab(models: ServedModels) -> None:
    pipe = models.text_pipeline
    with gr.Tab("Text → image", id="text"):
        rows, columns = starting_grid(2, 2, models.max_images)
        prompts = gr.Textbox(lines=4, label="prompts (one per line)", value=example_prompts(rows))
        negative = gr.Textbox(label="negative prompt (empty: the empty prompt)")
        per_prompt = slider_up_to(16, columns, models.max_images, "images per prompt")
        knobs = sampling_widgets(pipe)
        view = coarse_to_fine_widget()
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    inputs = [prompts, negative, per_prompt, *knobs, view]
    button.click(bind(sample_prompts, models, after_knobs=1), inputs, outputs, api_name="sample_prompts")


def coarse_to_fine_widget() -> gr.Checkbox:
    return gr.Checkbox(value=False, label="coarse to fine: each image after every scale (one row per image)")


def example_prompts(count: int) -> str:
    """The first ``count`` of the bundled scene model's demo prompts (captions of the kind it was trained on)."""
    from nextscale.cli.demo_text import DEMO_PROMPTS

    return "\n".join(DEMO_PROMPTS[:count])


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
            image = image_upload(example_image(pipe))
            with gr.Column():
                region = region_widgets(INPAINT_BOX)
                target = gr.Dropdown([UNCONDITIONAL, *class_choices(pipe)], value=UNCONDITIONAL, label="target class")
                num_results = slider_up_to(8, 3, models.max_images, "results")
        knobs = sampling_widgets(pipe, cfg_info=f"no effect when the target class is {UNCONDITIONAL}")
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
            image = image_upload(example)
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
