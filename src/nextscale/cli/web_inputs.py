"""The web demo's form values: one-line errors for the page, the checks of the numbers it sends, the sampling knobs.

Every user error (a bad number, too many images, a ``ValueError`` from the pipeline) becomes a
``gradio.Error`` (``UserError``) with one line, which the page shows instead of a traceback.

The form's values follow the page, not the library: gradio shows an empty number box as 0 once its accordion is
opened and then sends 0, so 0 (or empty) turns top-k and top-p off here, where the library wants None.

This module imports gradio at the top: only ``nextscale serve`` imports it (through ``web_app``), after checking
that gradio is installed (it is the optional ``demo`` extra).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields

import gradio as gr

from nextscale.cli import is_out_of_memory, one_line
from nextscale.sampling.pipeline import SEED_RANGE

# The demo's settings when a model records no recommended ones (``nextscale demo`` uses cfg 3 too).
DEFAULT_SAMPLING = {"cfg": 3.0, "top_k": None, "top_p": None, "temperature": 1.0}


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


def unreadable_upload(name: str, reason: str) -> UserError:
    """An upload Pillow cannot decode, named as the visitor named it (never by its path in the server's cache)."""
    return UserError(f"cannot read the uploaded image{named(name)} ({reason}); it is corrupt or not an image")


def too_large_upload(name: str, err: BaseException) -> UserError:
    """An upload over twice Pillow's decompression-bomb limit (``err``): a huge photo, not a corrupt file, so the
    page says so and how to fix it, where Pillow's message speaks of a DOS attack."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(err))
    size = f"{int(found[1]):,} pixels, over the {int(found[2]):,} this server opens" if found else one_line(err)
    return UserError(
        f"the uploaded image{named(name)} is too large to open ({size}): upload a smaller copy (a few thousand "
        "pixels a side is plenty; the model sees it at its own size)"
    )


def failed_request(err: Exception) -> gr.Error:
    """A request that failed inside the server for a reason the checks did not foresee: one line in the page (gradio
    shows a bare "Error" otherwise) that still names the error; gradio logs its traceback (print_exception)."""
    return gr.Error(
        f"this request failed inside the server ({type(err).__name__}: {one_line(err)}); its log has the traceback: "
        "try other settings, or report it"
    )


def expired_upload(name: str) -> UserError:
    """An upload gone from the server's cache: the page still shows it, but the daily clean-up deleted the file."""
    return UserError(
        f"the uploaded image{named(name)} is no longer on this server (uploads are deleted a day after they were "
        "made): upload it again"
    )


def named(name: str) -> str:
    return f" {name}" if name else ""


def check_image_count(count: int, max_images: int, fix: str) -> None:
    if count > max_images:
        raise UserError(f"{count} images asked for, but this server makes at most {max_images} per request: {fix}")


def whole_number(value: float | None, name: str) -> int:
    """``value`` as an int, refusing what ``int()`` would round without a word (2.5) or fail on (NaN, inf, empty)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, float) or not math.isfinite(value) or value != round(value):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def image_count(value: float | None, name: str) -> int:
    count = whole_number(value, name)
    if count < 1:
        raise UserError(f"{name} must be at least 1, got {count}")
    return count


def switch(value: bool | None, name: str) -> bool:
    """A checkbox's value: the page sends true or false, but the HTTP API passes anything, and the string "false"
    would count as ticked."""
    if value is None or (isinstance(value, (bool, int)) and value in (0, 1)):
        return bool(value)
    raise UserError(f"{name} must be true or false, got {value!r}")


def finite_number(value: float | None, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a number, got {value!r}")
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
            smooth=switch(self.smooth, "smooth"),
        )


KNOB_COUNT = len(fields(Knobs))
# What a handler samples with when called without knobs (tests, scripts); frozen, so one instance serves all.
DEFAULT_KNOBS = Knobs()
