"""What ``sample`` writes into --out-dir and --npz: image names, resuming (which images are already there,
intact), the settings record that refuses a mixed run, and packing the PNGs into one .npz."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from pathlib import Path

from nextscale.cli.sample_plan import Plan, resolve_classes

SETTINGS_FILE = "sample-settings.json"  # in --out-dir: what made its images, so a re-run resumes only the same run
# Settings recorded since a later version: a record written before lacks them, and its folder still resumes.
ADDED_LATER = ("--checkpoint", "--model-weights")
# Settings recorded only when on (so that folders written before they existed still resume): their value when absent.
RECORDED_WHEN_ON = {"--masked-sampling": False, "--cfg-schedule": "linear"}  # and --masked-plan, with masked sampling
SAMPLE_IMAGE = re.compile(r"\d{4,}(_class\d+)?\.png")  # the names image_name gives
LABELLED_IMAGE = re.compile(r"(\d{4,})_class\d+\.png")


def image_name(index: int, label: int | None) -> str:
    return f"{index:04d}.png" if label is None else f"{index:04d}_class{label}.png"


def drawn_label_images(out_dir: Path) -> dict[int, Path]:
    """index -> PNG of the images in --out-dir named with a label (one listing of the folder).

    A run that draws its labels names each image only after sampling it, so finding image i means searching the
    folder; one listing per run instead of one search per image keeps a 50,000-image resume linear (a search of a
    20,000-file folder takes about 12 ms).
    """
    found: dict[int, Path] = {}
    if out_dir.is_dir():
        with os.scandir(out_dir) as entries:
            for entry in entries:
                match = LABELLED_IMAGE.fullmatch(entry.name)
                if match:
                    found.setdefault(int(match.group(1)), out_dir / entry.name)
    return found


def written_image(
    out_dir: Path, index: int, plan: Plan, text: bool, listing: dict[int, Path] | None = None
) -> Path | None:
    """The PNG of image ``index`` in --out-dir, or None when it is not there yet or is damaged (it is made again).

    ``listing``: ``drawn_label_images(out_dir)``, taken once by a caller that asks about many images of a run whose
    labels are drawn; without it the folder is listed for this one question."""
    if text or plan.labels is not None:
        path = out_dir / image_name(index, None if text else plan.labels[index])
        return path if path.is_file() and intact_png(path) else None
    found = (drawn_label_images(out_dir) if listing is None else listing).get(index)
    return found if found is not None and intact_png(found) else None


def intact_png(path: Path) -> bool:
    """Whether a PNG reads back whole (its chunks' CRCs check out): images are written atomically, so a damaged
    one was damaged later (a bad copy, a full disk elsewhere) and is drawn again rather than counted as done."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def already_written(out_dir: Path, index: int, plan: Plan, text: bool, listing: dict[int, Path] | None = None) -> bool:
    return written_image(out_dir, index, plan, text, listing) is not None


def image_settings(args: argparse.Namespace, pipe, sampling: dict, seed: int | None) -> dict:
    """The settings that decide an --out-dir run's images, by flag (a re-run must match them to resume)."""
    import torch

    model = args.model if args.model is not None else ("bundled:scenes" if pipe.is_text_conditional else None)
    model = str(model or "bundled:fashion-mnist")
    features = None
    pipe.settle_linear_kernel()  # `--dtype auto` may pick oneDNN's float32 kernel, which is not the exact one
    precision = pipe.precision.name
    if precision == "fp32" and pipe.precision.linear_kernel == "onednn":  # plain "fp32" stays as older folders hold it
        precision = "fp32 (onednn linear kernel)"
    if args.text_features is not None:
        features = f"{args.text_features.name} (sha256 {hashlib.sha256(args.text_features.read_bytes()).hexdigest()})"
    return {
        "--model": model if model.startswith("bundled:") else str(Path(model).resolve()),
        **run_checkpoint(args.model),
        **model_weights(model),
        "--class": None if args.classes is None else resolve_classes(pipe, args.classes),
        "--prompt": args.prompt,
        "--negative-prompt": args.negative_prompt,
        "--text-features": features,
        "--num": args.num,
        "--batch-size": args.batch_size,  # batch b's seed is derived from (seed, b)
        "--seed": seed,
        # masked sampling and a constant cfg schedule recorded only when on, so that folders written before they
        # existed still resume
        **{
            f"--{name.replace('_', '-')}": value
            for name, value in sampling.items()
            if (sampling.get("masked_sampling") or name not in ("masked_sampling", "masked_plan"))
            and (name != "cfg_schedule" or value != "linear")
        },
        "--dtype": precision,
        "--device": torch.device(args.device).type,  # CPU and CUDA generators draw different numbers
    }


def run_checkpoint(model: Path | None) -> dict:
    """For a `nextscale train` run directory, the checkpoint it samples (its newest): training on writes newer
    ones under the same --model path, and a resume must not mix their images with the older checkpoint's."""
    from nextscale.cli.common import is_transformer_run

    if model is None or not is_transformer_run(model):
        return {}
    from nextscale.training.checkpoint import latest_checkpoint

    newest = latest_checkpoint(model)
    return {"--checkpoint": None if newest is None else newest.name}


def model_weights(model: str) -> dict:
    """For a pipeline folder, a fingerprint of its weight files (sizes and three 1 MiB pieces of each: training
    changes nearly every weight): exporting again into the same folder must not resume a run made with the older
    weights. A run directory is told by its checkpoint instead (:func:`run_checkpoint`)."""
    from nextscale.cli.common import is_transformer_run
    from nextscale.pretrained import resolve_model_path

    if is_transformer_run(model):
        return {}
    piece = 2**20
    digest = hashlib.sha256()
    folder = resolve_model_path(model)
    for path in sorted(child / "model.safetensors" for child in folder.iterdir() if child.is_dir()):
        if not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.parent.name} {size}\n".encode())
        with open(path, "rb") as handle:
            for offset in sorted({0, size // 2, max(size - piece, 0)}):
                handle.seek(offset)
                digest.update(handle.read(piece))
    return {"--model-weights": digest.hexdigest()[:16]}


def _shown(value) -> str:
    """A recorded setting as it is typed on the command line (shortened)."""
    if value is None or isinstance(value, bool):
        text = "none" if value is None else "on" if value else "off"
    else:
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 100 else f"{text[:48]}...{text[-48:]}"  # a path's end tells most


def _change(flag: str, before, now) -> str:
    """One changed setting, as "--cfg 1.5, now 3". Prompts are quoted, so that where one ends and the next begins
    shows, and two lists of as many prompts name the first that differs: "--prompt 2 'a red box', now 'a red fox'"."""
    texts = all(isinstance(value, list) and all(isinstance(item, str) for item in value) for value in (before, now))
    if not texts:
        return f"{flag} {_shown(before)}, now {_shown(now)}"
    if len(before) == len(now):
        number, old, new = next((i, a, b) for i, (a, b) in enumerate(zip(before, now), start=1) if a != b)
        return f"{flag} {number} {_quoted(old)}, now {_quoted(new)}"
    return f"{flag} {_quoted_list(before)}, now {_quoted_list(now)}"


def _quoted(text: str) -> str:
    """A prompt in quotes, shortened to about 60 characters."""
    return repr(text if len(text) <= 60 else f"{text[:57]}...")


def _quoted_list(texts: list[str]) -> str:
    shown = " ".join(_quoted(text) for text in texts[:4])
    return shown + (f" ... ({len(texts)} prompts)" if len(texts) > 4 else "")


def interrupted_note(out_dir: Path | None, written: int, skipped: int, count: int, resumable: bool) -> str:
    """What a Ctrl-C of ``sample`` leaves: the PNGs --out-dir holds (written atomically, so each is whole) and
    whether the same command resumes; the grid, --npz, --save-tokens and --show-scales are written only once every
    image is made (a streamed --npz removes its partial file), so without --out-dir nothing is kept."""
    if out_dir is None:
        return (
            f"interrupted before all {count} images were made; nothing was written (the outputs are written at the "
            "end): re-run the command to start again, or write --out-dir DIR to keep images as they are made"
        )
    there = f"{written} new PNG{'s' * (written != 1)} written to {out_dir}/" + (
        f" ({skipped} were there before)" if skipped else ""
    )
    if not resumable:  # no --seed with --out/--save-tokens/--show-scales: `sample` refuses that re-run
        return f"interrupted: {there}; to make the rest, re-run without --out, --save-tokens and --show-scales"
    return f"interrupted: {there}; re-run the same command to resume (the images already there are kept)"


def holds_sample_images(out_dir: Path) -> bool:
    return out_dir.is_dir() and any(SAMPLE_IMAGE.fullmatch(path.name) for path in out_dir.iterdir())


def check_out_dir_settings(out_dir: Path, settings: dict) -> None:
    """Record ``settings`` in --out-dir; refuse a folder whose images were made with other settings.

    Resuming skips the images already there, so a run with another seed, cfg or model would keep the old
    images under the new run's names: a silent mix. A folder of sample images without a record (from an older
    version) is refused too, since what made them is unknown.
    """
    from nextscale.pretrained import atomic_write_text

    record = out_dir / SETTINGS_FILE
    if holds_sample_images(out_dir):
        if not record.is_file():
            raise ValueError(
                f"--out-dir {out_dir} holds sample images but no {SETTINGS_FILE} saying how they were made, so "
                "new ones could not be told apart; choose another --out-dir, or delete those images"
            )
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{record} is not valid JSON ({err}); delete it, or choose another --out-dir") from err
        if not isinstance(recorded, dict):  # else an AttributeError traceback below
            raise ValueError(f"{record} is damaged (not a JSON object); delete it, or choose another --out-dir")
        # every flag of either side: one recorded only when on (--masked-sampling) is missing from the side where off
        flags = [*settings, *(flag for flag in recorded if flag in RECORDED_WHEN_ON and flag not in settings)]
        changed = {}
        for flag in flags:
            before = recorded.get(flag, RECORDED_WHEN_ON.get(flag))
            now = settings.get(flag, RECORDED_WHEN_ON.get(flag))
            if before != now and (flag in recorded or flag not in ADDED_LATER):
                changed[flag] = _change(flag, before, now)
        if changed:
            fix = "re-run with those settings to resume, or choose another --out-dir"
            if "--model-weights" in changed and "--model" not in changed:  # the same folder, written again
                fix = "the model folder holds other weights since (exported again?): choose another --out-dir"
            if "--checkpoint" in changed:  # no flag picks an older checkpoint
                fix = (
                    "the run has trained on since: choose another --out-dir, or sample an exported folder "
                    "(`nextscale export`) to pin the weights"
                )
            raise ValueError(
                f"--out-dir {out_dir} holds images made with other settings ({'; '.join(changed.values())}); {fix}"
            )
        return
    atomic_write_text(record, json.dumps(settings, indent=2) + "\n")


def pack_npz(out_dir: Path, plan: Plan, text: bool, path: Path, side: int, progress: bool) -> None:
    """Stream the run's PNGs from --out-dir, in index order, into ``path`` (see ``data.sample_sets``)."""
    import numpy as np
    from tqdm.auto import tqdm

    from nextscale.data.sample_sets import NpzImageWriter, open_sample_image, sample_label

    listing = None if text or plan.labels is not None else drawn_label_images(out_dir)

    def image_path(index: int) -> Path:
        found = written_image(out_dir, index, plan, text, listing)
        if found is None:
            raise FileNotFoundError(f"image {index} is missing from {out_dir}; re-run the same command to make it")
        return found

    chunk = 64
    with (
        NpzImageWriter(path, plan.count, side) as archive,
        tqdm(total=plan.count, desc="npz", unit="img", disable=not progress) as bar,
    ):
        for start in range(0, plan.count, chunk):
            paths = [image_path(index) for index in range(start, min(start + chunk, plan.count))]
            pixels = np.stack([np.asarray(open_sample_image(found, side)) for found in paths])
            labels = None if text else [sample_label(found.name) for found in paths]
            archive.add_pixels(pixels, labels)
            bar.update(len(paths))
