"""The web demo's handlers: what each tab's button calls, and the shared steps of a request.

Each handler (``sample_classes``, ``sample_prompts``, ``edit_image``, ``edit_image_with_text``) takes the
served models first and the widget values after, so tests call them directly. All model calls go through the
public ``Pipeline`` API (``pipe(...)``, ``pipe.edit(...)`` and, for the edit tabs' "extend" mode,
``pipe.outpaint(..., inner_fraction=...)`` as ``nextscale edit --extend``), grids come from
``data.grids.make_grid``, the edit tabs' results pasted back into the upload from ``EditOutput.pasted`` (what
``nextscale edit --paste-back`` writes), and every user error (no class chosen, an empty prompt, too many images,
an unreadable image, a bad box, a ``ValueError`` from the pipeline) becomes a one-line ``UserError`` (see
``web_inputs``).
Requests take turns on the models under one lock.

This module imports gradio (through ``web_inputs``): only ``nextscale serve`` imports it, through ``web_app``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from nextscale.cli import one_line
from nextscale.cli.demo import enlarge
from nextscale.cli.sample_plan import batch_seed
from nextscale.cli.sample_scales import scale_grid
from nextscale.cli.web_inputs import (
    DEFAULT_KNOBS,
    Knobs,
    UserError,
    check_image_count,
    expired_upload,
    finite_number,
    image_count,
    shown_in_the_page,
    switch,
    too_large_upload,
    unreadable_upload,
)
from nextscale.data.grids import prompt_label

if TYPE_CHECKING:
    from nextscale.sampling.outputs import EditOutput, PipelineOutput
    from nextscale.sampling.pipeline import Pipeline
    from nextscale.sampling.text_pipeline import TextPipeline

DISPLAY_SIDE = 128  # tiles are enlarged (nearest neighbour) to at least this many pixels, so 32 px models are visible
UNCONDITIONAL = "(none: unconditional)"
WAIT_WORTH_SAYING = 0.5  # seconds queued behind other requests from which the status line mentions the wait
# The editing library's error when the box and mode keep no token: plain sampling, which another tab does.
KEEPS_NOTHING = "keeps nothing of the image"
# ... and when they keep every token (an outpainted box over the whole image): its "non-empty region" misleads here.
GENERATES_NOTHING = "leaves nothing to generate"
# The edit tabs' modes: the library's two, and "extend", which is `nextscale edit --extend` (``pipe.outpaint`` with
# ``inner_fraction``: the image shrunk into the middle of the canvas, a frame generated around it).
EDIT_MODES = ("inpaint", "outpaint", "extend")
DEFAULT_EXTEND = 0.6  # the image's side on the extended canvas (as `nextscale edit --extend 0.6`)
# The library's errors for an extend size that rounds to the whole token grid, or to none of it.
NO_FRAME = "leaving no frame to generate"
UNDER_ONE_CELL = "smaller than one cell"


@dataclass
class ServedModels:
    """What the handlers serve: the class pipeline, the text pipeline (None: no text tab) and the per-request cap.

    ``lock`` lets one model call run at a time: a pipeline keeps its KV cache and CPU memory between calls, so
    two calls on it at once are not safe, and two calls on different pipelines would only share the same cores.
    """

    class_pipeline: Pipeline | None
    text_pipeline: TextPipeline | None = None
    max_images: int = 64
    lock: threading.Lock = field(default_factory=threading.Lock)


# ----------------------------------------------------------------------------------------- request steps
def require_class_model(models: ServedModels) -> Pipeline:
    if models.class_pipeline is None:
        raise UserError("this server has no class model: start it without --no-class")
    return models.class_pipeline


def require_text_model(models: ServedModels) -> TextPipeline:
    if models.text_pipeline is None:
        raise UserError("this server has no text model: start it with --text-model DIR")
    return models.text_pipeline


def class_choices(pipe: Pipeline) -> list[str]:
    """The names the class dropdowns offer: the model's class names, else the ids as text."""
    return list(pipe.class_names) if pipe.class_names else [str(index) for index in range(pipe.num_classes)]


def class_id(pipe: Pipeline, choice: str) -> int:
    choices = class_choices(pipe)
    if choice not in choices:
        raise UserError(f"unknown class {choice!r}: pick one from the list")
    return choices.index(choice)


def has_scales(pipe: Pipeline) -> bool:
    """Whether the model draws its tokens scale by scale (not the raster baseline's one map): what the
    coarse-to-fine view shows and what editing teacher-forces."""
    return len(pipe.tokenizer.config.scale_sides) > 1


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


def recommends_masked_sampling(pipe: Pipeline) -> bool:
    """A model with the masked-sampler head recommends masked sampling (the official demo's setting), for sampling
    and editing alike, as ``nextscale sample`` and ``nextscale edit`` take it."""
    return bool((pipe.recommended_sampling or {}).get("masked_sampling", False))


def status_line(count: int, timing: Timing, pipe: Pipeline, seed: int) -> str:
    seconds = time.perf_counter() - timing.started
    line = f"{count} image{'s' if count != 1 else ''} in {seconds:.1f} s"
    if timing.waited >= WAIT_WORTH_SAYING:
        line += f", after {timing.waited:.1f} s waiting for other requests"
    return f"{line} ({pipe.precision.name}, seed {seed})"


def truncation_note(pipe: TextPipeline, texts: list[str], negative: str = "") -> str:
    """A clause for the status line when a prompt (or the ``negative`` prompt) is longer than the text encoder
    takes: the encoder cuts it and says so only in the server's log, unseen in the page, so a long prompt's end was
    ignored without a word. Empty when every text fits (or the pipeline has no encoder, which then fails on its own).
    Call it under the model lock: it runs the pipeline's tokenizer, which another request may be using."""
    encoder = pipe.text_encoder
    if encoder is None:
        return ""

    def too_long(batch: list[str]) -> int:
        token_ids = encoder.tokenizer(batch, truncation=False, verbose=False)["input_ids"] if batch else []
        return sum(len(ids) > encoder.max_length for ids in token_ids)

    count = too_long(texts)
    which = [] if not count else ["the prompt is" if len(texts) == 1 else f"{count} of {len(texts)} prompts are"]
    if negative and too_long([negative]):
        which.append("the negative prompt is")
    limit = f"longer than the text encoder's {encoder.max_length} tokens: the rest was ignored, shorten it"
    return "".join(f"; {subject} {limit}" for subject in which)


def tiny_image_note(image: Image.Image, size: int) -> str:
    """The library's note on a tiny edited picture (``tiny_picture_note``) as a clause for the status line: the
    library warns only in the server's log, and the page showed a blurred edit without a word. Empty otherwise."""
    from nextscale.sampling.pipeline_editing import tiny_picture_note

    note = tiny_picture_note(*image.size, min(image.size), size)
    return f"; {note}" if note else ""


# ---------------------------------------------------------------------------------------------- handlers
def sample_classes(
    models: ServedModels,
    classes: list[str] | None,
    images_per_class: int,
    knobs: Knobs = DEFAULT_KNOBS,
    coarse_to_fine: bool = False,
) -> tuple[Image.Image, str]:
    """Class tab: one row per chosen class, ``images_per_class`` columns, labelled with the class names (with
    ``coarse_to_fine``: one row per image, one column per scale, see ``cli.sample_scales.scale_grid``).

    Returns:
        (the grid as a PIL image, a status line: count, seconds, precision and seed).
    """
    pipe = require_class_model(models)
    coarse_to_fine = switch(coarse_to_fine, "coarse to fine")
    if isinstance(classes, str):  # one name through the HTTP API, not a list: one class, not one per character
        classes = [classes]
    if not classes:
        raise UserError("no class chosen: pick at least one class from the list")
    per_class = image_count(images_per_class, "images per class")
    check_image_count(len(classes) * per_class, models.max_images, "choose fewer classes or images per class")
    labels = [class_id(pipe, choice) for choice in classes]
    if coarse_to_fine and not has_scales(pipe):
        raise UserError(
            "this model has one scale (the raster baseline draws one token map, token by token), so there is no "
            "coarse-to-fine view: untick it"
        )
    settings = knobs.settings()
    names = [choice for choice in classes for _ in range(per_class)]  # class-major, as the pipeline repeats them
    with shown_in_the_page(), turn(models) as timing:
        out = pipe(class_labels=labels, num_images_per_prompt=per_class, output_type="pt", **settings)
        grid = result_grid(pipe, out, names, per_class, coarse_to_fine)
    return grid, status_line(len(names), timing, pipe, settings["seed"])


def result_grid(pipe, out, labels: list[str], per_row: int, coarse_to_fine: bool) -> Image.Image:
    """The images of a sampling call, ``per_row`` to a row, or (``coarse_to_fine``) one row per image and one column
    per scale. Called under the model lock: the coarse-to-fine decoder passes are model work too."""
    from nextscale.data.grids import make_grid

    if coarse_to_fine:
        return scale_grid(pipe, out.tokens, labels, display_zoom(pipe))
    return make_grid(enlarge(out.images * 2 - 1, display_zoom(pipe)), nrow=per_row, labels=labels)


def joined(outs: list[PipelineOutput]) -> PipelineOutput:
    """Several calls' outputs (``output_type="pt"``) as one, in order."""
    import torch

    from nextscale.sampling.outputs import PipelineOutput

    prompts = [prompt for out in outs for prompt in (out.prompts or [])]
    return PipelineOutput(
        images=torch.cat([out.images for out in outs]),
        tokens=torch.cat([out.tokens for out in outs]),
        class_labels=None,
        prompts=prompts or None,
    )


def sample_prompts(
    models: ServedModels,
    prompts: str,
    negative_prompt: str,
    images_per_prompt: int,
    knobs: Knobs = DEFAULT_KNOBS,
    coarse_to_fine: bool = False,
) -> tuple[Image.Image, str]:
    """Text tab: one row per prompt (one prompt per line of ``prompts``), ``images_per_prompt`` columns (with
    ``coarse_to_fine``: one row per image, one column per scale).

    An empty ``negative_prompt`` means the empty prompt (the model's unconditional input).
    """

    pipe = require_text_model(models)
    coarse_to_fine = switch(coarse_to_fine, "coarse to fine")
    lines = [line.strip() for line in (prompts or "").splitlines() if line.strip()]
    if not lines:
        raise UserError("the prompt is empty: write at least one prompt, one per line")
    per_prompt = image_count(images_per_prompt, "images per prompt")
    check_image_count(len(lines) * per_prompt, models.max_images, "write fewer prompts or ask for fewer images each")
    negative = (negative_prompt or "").strip()
    settings = knobs.settings()
    labels = [prompt_label(line) for line in lines for _ in range(per_prompt)]
    seed = settings.pop("seed")
    # A converted official STAR model keeps the official batch-0 cross-attention: in a batch, every row attends to
    # the first prompt's text. One prompt per call then, with the seeds `nextscale sample --batch-size N` gives
    # each batch, so that every row shows its own prompt (the library only logs a warning, unseen in the page).
    batch0 = getattr(pipe.transformer.config, "official_batch0_cross_attention", False) and len(set(lines)) > 1
    batches = [[line] for line in lines] if batch0 else [lines]
    with shown_in_the_page(), turn(models) as timing:
        outs = [
            pipe(
                prompt=batch,
                negative_prompt=[negative] if negative else None,
                num_images_per_prompt=per_prompt,
                output_type="pt",
                masked_sampling=recommends_masked_sampling(pipe),
                seed=batch_seed(seed, index),
                **settings,
            )
            for index, batch in enumerate(batches)
        ]
        out = joined(outs)
        grid = result_grid(pipe, out, labels, per_prompt, coarse_to_fine)
        note = truncation_note(pipe, list(dict.fromkeys(lines)), negative)
    return grid, status_line(len(labels), timing, pipe, seed) + note


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
    knobs: Knobs = DEFAULT_KNOBS,
    extend: float = DEFAULT_EXTEND,
) -> tuple[Image.Image, str, list[tuple[Image.Image, str]]]:
    """Edit tab: inpaint or outpaint the box (y0 x0 y1 x1 fractions, as ``nextscale edit --box``) of an image
    with the class model, towards ``target`` (a class name, or unconditional); or, in mode "extend", shrink the
    whole image to ``extend`` of the canvas side and generate a frame around it (``nextscale edit --extend``; the
    box is not used).

    Returns:
        (input | input with the regenerated region tinted red | results, side by side, at the model's size; a status
        line; each result pasted back into the upload at its own size and mode, with a caption: what
        ``nextscale edit --paste-back`` writes).
    """
    pipe = require_class_model(models)
    class_label = None if target in (None, UNCONDITIONAL) else class_id(pipe, target)
    region = Region(box=(y0, x0, y1, x1), mode=mode, extend=extend)
    return run_edit(models, pipe, image_path, region, num_results, knobs, "Class → image", class_label=class_label)


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
    knobs: Knobs = DEFAULT_KNOBS,
    extend: float = DEFAULT_EXTEND,
) -> tuple[Image.Image, str, list[tuple[Image.Image, str]]]:
    """Text edit tab: as :func:`edit_image` with the text model, towards ``prompt`` (the whole picture's
    caption, as the model was trained on; empty: the empty prompt)."""
    pipe = require_text_model(models)
    text = " ".join((prompt or "").split()) or None
    region = Region(box=(y0, x0, y1, x1), mode=mode, extend=extend)
    masked = recommends_masked_sampling(pipe)
    return run_edit(
        models, pipe, image_path, region, num_results, knobs, "Text → image", prompt=text, masked_sampling=masked
    )


@dataclass(frozen=True)
class Region:
    """What an edit tab regenerates: the box (y0 x0 y1 x1 fractions) in modes "inpaint" and "outpaint", or a frame
    around the image shrunk to ``extend`` of the canvas side in mode "extend"."""

    box: tuple[float, float, float, float]
    mode: str
    extend: float = DEFAULT_EXTEND

    def check(self) -> None:
        """One line for a mode the page does not offer, a box (or extend size) that is not a number or holds nothing
        (the page's sliders send numbers in range; the HTTP API and scripts may not), before the image is read; the
        token grid's rounding is checked by the library."""
        if self.mode not in EDIT_MODES:
            raise UserError(f"unknown mode {self.mode!r}: choose one of {', '.join(EDIT_MODES)}")
        if self.mode == "extend":  # the library names it inner_fraction, and reads a missing one as a missing box
            extend = finite_number(self.extend, "extend")
            if not 0 < extend < 1:
                raise UserError(f"extend must be between 0 and 1 (the image's size on the canvas), got {extend:g}")
            return
        y0, x0, y1, x1 = (finite_number(value, name) for value, name in zip(self.box, ("y0", "x0", "y1", "x1")))
        if not y0 < y1 or not x0 < x1:
            raise UserError(
                f"empty box (y0 {y0:g}, x0 {x0:g}, y1 {y1:g}, x1 {x1:g}): move the sliders so that y0 < y1 and x0 < x1"
            )

    def edit(self, pipe: Pipeline, image: Image.Image, **options) -> EditOutput:
        """The library's edit of this region: ``pipe.edit`` for a box, ``pipe.outpaint(inner_fraction=...)`` (what
        ``nextscale edit --extend`` calls) for the frame."""
        if self.mode == "extend":
            return pipe.outpaint(image, inner_fraction=self.extend, **options)
        return pipe.edit(image, mode=self.mode, box=self.box, **options)

    def page_error(self, err: ValueError, sampling_tab: str, grid_side: int) -> UserError | None:
        """The library's error for a region that keeps nothing or generates nothing, in the page's words (it speaks
        of masks, the `sample` command and ``inner_fraction``); None for other errors."""
        message = str(err)
        if KEEPS_NOTHING in message:
            resize = "shrink" if self.mode == "inpaint" else "enlarge"
            return UserError(
                f"this box and mode keep nothing of the image, which is plain sampling: use the {sampling_tab} tab, or "
                f"{resize} the box"
            )
        if GENERATES_NOTHING in message:  # outpainting a box over the whole image
            return UserError(
                "this box and mode keep all of the image, leaving nothing to generate: shrink the box, or choose "
                "inpaint"
            )
        side = f"{grid_side}x{grid_side}"
        if NO_FRAME in message:
            return UserError(
                f"extend {self.extend:g} rounds to the whole {side} token grid of this model, leaving no frame to "
                "generate: choose a smaller extend"
            )
        if UNDER_ONE_CELL in message:
            return UserError(
                f"extend {self.extend:g} shrinks the image below one cell of this model's {side} token grid: choose a "
                "larger extend"
            )
        return None


def run_edit(
    models: ServedModels,
    pipe: Pipeline,
    image_path: str | None,
    region: Region,
    num_results: int,
    knobs: Knobs,
    sampling_tab: str,
    **target,
) -> tuple[Image.Image, str, list[tuple[Image.Image, str]]]:
    """Check the request, edit under the lock, lay out input | region | results and paste each result back into the
    upload (both edit tabs; the pasting is outside the lock: it does not touch the models).
    ``sampling_tab`` names the tab that samples with the same model, for a box that keeps nothing; ``target`` (the
    class label or prompt, and the text model's masked sampling) goes to the library's edit."""
    from nextscale.data.grids import make_grid
    from nextscale.data.image_reading import open_image

    if not image_path:
        raise UserError("no image: upload one (PNG, JPEG or WebP)")
    region.check()
    count = image_count(num_results, "number of results")
    check_image_count(count, models.max_images, "ask for fewer results")
    settings = knobs.settings()
    # the upload's own name: its path in gradio's cache says nothing to the visitor, and shows the server's folders
    name = Path(image_path).name
    with shown_in_the_page():
        try:  # a truncated file passes the widget's check (it reads the header) and fails here, on decoding
            image = open_image(image_path)
        except FileNotFoundError as err:  # deleted by the cache clean-up while the page stayed open
            raise expired_upload(name) from err
        except ValueError as err:
            if isinstance(err.__cause__, Image.DecompressionBombError):
                raise too_large_upload(name, err.__cause__) from err
            raise unreadable_upload(name, one_line(err.__cause__ or err).replace(str(image_path), name)) from err
        with turn(models) as timing:
            try:
                out = region.edit(pipe, image, num_images=count, output_type="pt", **target, **settings)
            except ValueError as err:
                page_error = region.page_error(err, sampling_tab, pipe.transformer.config.scale_sides[-1])
                if page_error is None:
                    raise
                raise page_error from err
            # the text edit tab's prompt, checked with the tokenizer while this request holds it
            note = truncation_note(pipe, [target["prompt"]]) if target.get("prompt") else ""
    note += tiny_image_note(image, pipe.image_size)
    pictures, labels = out.side_by_side()
    grid = make_grid(enlarge(pictures, display_zoom(pipe)), nrow=len(labels), labels=labels)
    pasted = [(picture, f"result {index + 1}") for index, picture in enumerate(out.pasted())]
    return grid, status_line(count, timing, pipe, settings["seed"]) + note, pasted
