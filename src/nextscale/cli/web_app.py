"""The gradio app behind ``nextscale serve``: class -> image, text -> image and editing tabs in a browser.

This module lays out the widgets and tabs and binds each tab's button to its handler in ``web_handlers`` (the
form's values are checked in ``web_inputs``). ``build_app`` returns the unlaunched page.

This module imports gradio at the top: only ``nextscale serve`` imports it, after checking that gradio is
installed (it is the optional ``demo`` extra).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from typing import TYPE_CHECKING

import gradio as gr
import pydantic
from gradio.exceptions import InvalidPathError
from PIL import Image

from nextscale.cli import one_line
from nextscale.cli.demo import EXAMPLES, INPAINT_BOX
from nextscale.cli.web_handlers import (
    DEFAULT_EXTEND,
    EDIT_MODES,
    UNCONDITIONAL,
    ServedModels,
    class_choices,
    edit_image,
    edit_image_with_text,
    has_scales,
    sample_classes,
    sample_prompts,
)
from nextscale.cli.web_inputs import (
    DEFAULT_SAMPLING,
    KNOB_COUNT,
    Knobs,
    UserError,
    expired_upload,
    failed_request,
    too_large_upload,
    unreadable_upload,
)

if TYPE_CHECKING:
    from gradio.data_classes import ImageData

    from nextscale.sampling.pipeline import Pipeline
    from nextscale.sampling.text_pipeline import TextPipeline

# Pillow signals an unreadable, truncated or oversized image with one of these.
IMAGE_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# gradio keeps every upload and every result image in its cache, by default until the disk is full: every hour,
# delete those older than a day (a page left open that long shows its images, but cannot download them again).
CACHE_CLEANUP = (3600, 86400)  # (every N seconds, files older than M seconds)


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
        except FileNotFoundError as err:  # deleted by the cache clean-up (CACHE_CLEANUP) while the page stayed open
            raise expired_upload(payload.orig_name or "") from err
        except Image.DecompressionBombError as err:  # over twice Pillow's pixel limit: a huge photo, not a bad file
            raise too_large_upload(payload.orig_name or "", err) from err
        except IMAGE_READ_ERRORS as err:
            name, reason = payload.orig_name or "", one_line(err)
            if payload.path and name:  # the upload's name, not gradio's cache path
                reason = reason.replace(str(payload.path), name)
            raise unreadable_upload(name, reason) from err

    image.preprocess = preprocess
    return image


def slider(minimum: float, maximum: float, **options) -> gr.Slider:
    """A ``gr.Slider`` whose values outside it are one line naming the slider. The page always sends a number in
    range, but the HTTP API takes anything: gradio's own check compares None or "2" with the bounds (a bare
    "Error" and a logged traceback), lets NaN through, and says "Value 0 is less than minimum value 0.1" without
    saying which slider. Wrapped on the instance, as :func:`image_upload` is."""
    widget = gr.Slider(minimum, maximum, **options)
    check = widget.preprocess

    def preprocess(payload: float) -> float:
        number = isinstance(payload, (int, float)) and not isinstance(payload, bool)
        if not number or not minimum <= payload <= maximum:  # NaN fails the comparison too
            raise UserError(f"{widget.label} must be a number from {minimum:g} to {maximum:g}, got {payload!r}")
        return check(payload)

    widget.preprocess = preprocess
    return widget


def readable_api_errors(app: gr.Blocks) -> None:
    """Make the malformed HTTP API calls that gradio refuses before any widget or handler runs one line each,
    instead of a bare "Error" (or none at all) and a logged traceback: a call with too few inputs (gradio's
    message, a ValueError, is hidden from the caller), an image input that is not a file object (a bare path or a
    number fails gradio's pydantic check of the upload), one whose path was not uploaded to this server (a path on
    the caller's machine), and one that is a web address (gradio would download it: a request to any host, and a
    bare "Error" offline). A widget's own one-line refusal (a radio or dropdown value not among
    its choices) is no longer logged with a traceback either. Wrapped on the instance, as :func:`image_upload` is."""
    check_inputs, preprocess = app.validate_inputs, app.preprocess_data

    def validate_inputs(block_fn, inputs: list) -> None:
        if len(inputs) < len(block_fn.inputs):
            labels = ", ".join(str(getattr(block, "label", None) or type(block).__name__) for block in block_fn.inputs)
            raise UserError(
                f"/{block_fn.api_name} takes {len(block_fn.inputs)} inputs, got {len(inputs)}: send one value for "
                f"each, in order ({labels})"
            )
        check_inputs(block_fn, inputs)

    async def preprocess_data(block_fn, inputs: list, *args, **kwargs) -> list:
        url = image_url(block_fn, inputs)
        if url is not None:  # gradio would fetch it, and fail with a bare "Error" when offline
            raise UserError(
                f"this server does not download images, and an image input is the URL {url}: download it and upload "
                "the file (gradio_client's handle_file(local path), or POST it to /gradio_api/upload)"
            )
        try:
            return await preprocess(block_fn, inputs, *args, **kwargs)
        except InvalidPathError as err:  # a path on the caller's machine, or anywhere but gradio's upload folder
            found = re.search(r"Cannot move (.+) to the gradio cache dir because it was not uploaded", str(err))
            if found is None:
                raise UserError(one_line(err)) from err
            raise UserError(
                f"an image input must be a file uploaded to this server first, got the path {found[1]}: send "
                "gradio_client's handle_file(path), or the path that POST /gradio_api/upload returns"
            ) from err
        except gr.Error as err:  # a widget's refusal (a mode or class not in its choices): the caller's, not a bug
            err.print_exception = False  # gradio's own errors log a traceback each by default
            raise
        except pydantic.ValidationError as err:  # the image widget is the only input with a data model
            value = err.errors()[0].get("input") if err.errors() else None
            what = "an image input" if err.title == "ImageData" else f"an input ({err.title})"
            raise UserError(
                f"{what} must be an uploaded file ({{'path': ..., 'meta': {{'_type': 'gradio.FileData'}}}}: "
                f"gradio_client's handle_file(path), or a path from /gradio_api/upload), got {value!r}"
            ) from err

    app.validate_inputs, app.preprocess_data = validate_inputs, preprocess_data


def image_url(block_fn, inputs: list) -> str | None:
    """The first image input sent as a web address (``handle_file("https://...")``, which gradio_client's
    view_api offers as the edit tabs' example) instead of an uploaded file; None when there is none. The page
    always uploads."""
    for block, value in zip(block_fn.inputs, inputs):
        path = value.get("path") if isinstance(value, dict) else None
        if isinstance(block, gr.Image) and isinstance(path, str) and path.startswith(("http://", "https://")):
            return path
    return None


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
            cfg = slider(0.0, 10.0, value=start["cfg"], step=0.1, label="cfg (0: off)", info=cfg_info)
            temperature = slider(0.1, 3.0, value=start["temperature"], step=0.05, label="temperature")
        with gr.Row():
            # the page shows an empty box as 0 and sends 0: both mean off (Knobs.settings)
            top_k = gr.Number(value=start["top_k"], label="top-k (0 or empty: off)")
            top_p = gr.Number(value=start["top_p"], label="top-p in (0, 1] (0 or empty: off)")
            smooth = gr.Checkbox(value=False, label="smooth (Gumbel mixture of codes)")
    return [seed, cfg, top_k, top_p, temperature, smooth]


def result_widgets(pasted: bool = False) -> list:
    """The result image and the status line; with ``pasted`` (the edit tabs), also a gallery of the results pasted
    back into the upload at its size and mode (PNG: a transparent upload keeps its alpha), after the status line
    among the outputs so that API clients find the first two where they were."""
    image = gr.Image(label="result", type="pil", format="png", interactive=False)
    if not pasted:
        return [image, gr.Textbox(label="status", interactive=False)]
    gallery = gr.Gallery(
        label="pasted back into the image, at its size (as nextscale edit --paste-back)",
        type="pil",
        format="png",
        interactive=False,
        columns=3,
    )
    return [image, gr.Textbox(label="status", interactive=False), gallery]


def slider_up_to(maximum: int, value: int, max_images: int, label: str) -> gr.Slider | gr.Number:
    """An image-count slider from 1 to ``maximum``, never past the server's per-request cap (a fixed 1 under
    ``--max-images 1``, as gradio refuses a slider from 1 to 1)."""
    top = min(maximum, max_images)
    if top == 1:
        return gr.Number(value=1, interactive=False, label=label)
    return slider(1, top, value=min(value, top), step=1, label=label)


def bind(handler, models: ServedModels, after_knobs: int = 0):
    """``handler`` with the served models filled in and the six widget values of the sampling knobs (the last ones
    but ``after_knobs``) folded into :class:`Knobs`, under the handler's own name (gradio's API names)."""

    def bound(*values):
        end = len(values) - after_knobs
        try:
            return handler(models, *values[: end - KNOB_COUNT], Knobs(*values[end - KNOB_COUNT : end]), *values[end:])
        except gr.Error:
            raise
        except Exception as err:  # a bug, not the user's: still one line in the page, and the server keeps serving
            raise failed_request(err) from err

    bound.__name__ = bound.__qualname__ = handler.__name__
    bound.__doc__ = handler.__doc__
    bound.__signature__ = api_signature(handler)
    return bound


def api_signature(handler) -> inspect.Signature:
    """The bound handler's inputs as the HTTP API names them: the handler's own parameters after ``models``, with
    ``knobs`` spelled out as the fields of :class:`Knobs`. gradio names an endpoint's inputs after its function's
    parameters, and ``*values`` alone gave param_0, param_1, ... (no keyword calls: ``predict(seed=3, ...)``);
    a parameter defaulting to None (top-k, top-p) is also optional to the client."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = []
    for parameter in list(inspect.signature(handler).parameters.values())[1:]:
        if parameter.name == "knobs":
            parameters += [inspect.Parameter(knob.name, keyword, default=knob.default) for knob in fields(Knobs)]
        else:
            parameters.append(parameter.replace(kind=keyword, annotation=inspect.Parameter.empty))
    return inspect.Signature(parameters)


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
        view = coarse_to_fine_widget(visible=has_scales(pipe))  # still an input of the HTTP API
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    inputs = [classes, per_class, *knobs, view]
    button.click(bind(sample_classes, models, after_knobs=1), inputs, outputs, api_name="sample_classes")


def text_tab(models: ServedModels) -> None:
    pipe = models.text_pipeline
    with gr.Tab("Text → image", id="text"):
        rows, columns = starting_grid(2, 2, models.max_images)
        prompts = gr.Textbox(lines=4, label="prompts (one per line)", value=example_prompts(rows))
        # value "": an API client may leave it out (gradio makes an input without a starting value required)
        negative = gr.Textbox(value="", label="negative prompt (empty: the empty prompt)")
        per_prompt = slider_up_to(16, columns, models.max_images, "images per prompt")
        knobs = sampling_widgets(pipe)
        view = coarse_to_fine_widget()
        button = gr.Button("Generate", variant="primary")
        outputs = result_widgets()
    inputs = [prompts, negative, per_prompt, *knobs, view]
    button.click(bind(sample_prompts, models, after_knobs=1), inputs, outputs, api_name="sample_prompts")


def coarse_to_fine_widget(visible: bool = True) -> gr.Checkbox:
    label = "coarse to fine: each image after every scale (one row per image)"
    return gr.Checkbox(value=False, label=label, visible=visible)


def example_prompts(count: int) -> str:
    """The first ``count`` of the bundled scene model's demo prompts (captions of the kind it was trained on)."""
    from nextscale.cli.demo_text import DEMO_PROMPTS

    return "\n".join(DEMO_PROMPTS[:count])


def example_image(pipe: Pipeline) -> str | None:
    """The bundled real test image, offered when the class model is a 10-class one like the bundled model."""
    from nextscale.data.fashion_mnist import CLASS_NAMES

    path = EXAMPLES / "example.png"
    return str(path) if pipe.num_classes == len(CLASS_NAMES) and path.is_file() else None


def region_widgets(box: tuple[float, float, float, float]) -> tuple[list, gr.Slider]:
    """The y0 x0 y1 x1 sliders (fractions, as ``nextscale edit --box``) and the inpaint / outpaint / extend choice;
    and the extend slider (``nextscale edit --extend``), an input after the sampling knobs (see :func:`bind`)."""
    sliders = [
        slider(0.0, 1.0, value=value, step=0.05, label=f"{name} (fraction)")
        for name, value in zip(("y0", "x0", "y1", "x1"), box)
    ]
    mode = gr.Radio(
        list(EDIT_MODES),
        value="inpaint",
        label="mode",
        info="inpaint regenerates the box; outpaint keeps it and regenerates the rest; extend shrinks the whole image "
        "into the middle and generates a frame around it (the box is not used)",
    )
    # The library rounds the size to whole token cells and says when it rounds to all or none of the grid.
    extend = slider(
        0.05, 0.95, value=DEFAULT_EXTEND, step=0.05, label="extend: the image's size on the canvas (fraction)"
    )
    return [*sliders, mode], extend


def edit_tab(models: ServedModels) -> None:
    pipe = models.class_pipeline
    with gr.Tab("Edit", id="edit"):
        with gr.Row():
            image = image_upload(example_image(pipe))
            with gr.Column():
                region, extend = region_widgets(INPAINT_BOX)
                target = gr.Dropdown([UNCONDITIONAL, *class_choices(pipe)], value=UNCONDITIONAL, label="target class")
                num_results = slider_up_to(8, 3, models.max_images, "results")
        knobs = sampling_widgets(pipe, cfg_info=f"no effect when the target class is {UNCONDITIONAL}")
        button = gr.Button("Edit", variant="primary")
        outputs = result_widgets(pasted=True)
    inputs = [image, *region, target, num_results, *knobs, extend]
    button.click(bind(edit_image, models, after_knobs=1), inputs, outputs, api_name="edit_image")


def text_edit_tab(models: ServedModels) -> None:
    from nextscale.cli.demo_text import EDIT_PLACE, EXAMPLE_SCENE, QUADRANT_BOXES, edit_example_prompt

    pipe = models.text_pipeline
    example = EXAMPLE_SCENE if EXAMPLE_SCENE.is_file() else None
    with gr.Tab("Edit with text", id="text-edit"):
        with gr.Row():
            image = image_upload(example)
            with gr.Column():
                region, extend = region_widgets(QUADRANT_BOXES[EDIT_PLACE])
                prompt = gr.Textbox(
                    value=edit_example_prompt() if example else "",
                    label="prompt: the whole edited picture's caption (empty: the empty prompt)",
                )
                num_results = slider_up_to(8, 3, models.max_images, "results")
        knobs = sampling_widgets(pipe)
        button = gr.Button("Edit", variant="primary")
        outputs = result_widgets(pasted=True)
    inputs = [image, *region, prompt, num_results, *knobs, extend]
    button.click(bind(edit_image_with_text, models, after_knobs=1), inputs, outputs, api_name="edit_image_with_text")


def build_app(
    class_pipeline: Pipeline | None, text_pipeline: TextPipeline | None = None, max_images: int = 64
) -> gr.Blocks:
    """The web demo: tabs "Class → image", "Text → image", "Edit" and "Edit with text" (the class tabs only with a
    class pipeline, the text tabs only with a text pipeline; no "Edit" tab for the raster baseline, which cannot edit).

    Args:
        class_pipeline: a class-conditional ``Pipeline``, or None for no class tabs.
        text_pipeline: a ``TextPipeline``, or None for no text tabs.
        max_images: the most images one request may ask for.
    Returns:
        the unlaunched ``gradio.Blocks``; ``app.launch(...)`` serves it.
    """
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    if class_pipeline is None and text_pipeline is None:
        raise ValueError("the web demo needs a class pipeline, a text pipeline or both")
    models = ServedModels(class_pipeline, text_pipeline, max_images)
    with gr.Blocks(title="nextscale", analytics_enabled=False, delete_cache=CACHE_CLEANUP) as app:
        gr.Markdown("# nextscale: next-scale image generation (VAR / STAR)")
        with gr.Tabs():
            if class_pipeline is not None:
                class_tab(models)
            if text_pipeline is not None:
                text_tab(models)
            if class_pipeline is not None and has_scales(class_pipeline):  # a raster model cannot edit
                edit_tab(models)
            if text_pipeline is not None:
                text_edit_tab(models)
    readable_api_errors(app)
    return app
