"""Sample images from a pipeline folder: class-conditional (VAR) or from prompts (STAR).

Examples (the official FID settings, on a converted VAR model; the official STAR demo settings):
    nextscale sample --model var-d16/ --class 207 980 --num 4 --seed 42 --cfg 1.5 --top-k 900 --top-p 0.96 \\
        --out grid.png --out-dir samples/ --save-tokens tokens.safetensors
    nextscale sample --model star-256/ --prompt "a red apple" "a blue car" --negative-prompt "blurry" \\
        --seed 1 --cfg 4.5 --top-k 600 --top-p 0.8 --out grid.png --out-dir samples/
    nextscale sample --model star-256/ --text-features feats.safetensors --cfg 4 --out grid.png

    nextscale sample --class sneaker "ankle boot" --num 4 --out grid.png          # class names (bundled model)
    nextscale sample --class 3 --num 100000 --batch-size 256 --out-dir dress/    # at scale; re-run resumes

The VAR paper's FID-50k set (50 per ImageNet class), on 8 GPUs, packed for OpenAI's evaluation suite (or
`nextscale evaluate --samples fid50k.npz --reference DIR`):
    torchrun --nproc-per-node 8 -m nextscale sample --model var-d16/ --class all --num 50 --batch-size 64 \\
        --seed 0 --cfg 1.5 --top-k 900 --top-p 0.96 --device cuda --out-dir fid50k/ --npz fid50k.npz

--class takes ids or the class names the model records (pipeline.json "class_names"); grids are labelled
with the names. Without --class, labels are drawn from the seeded generator (the official sampler's first
draw) and --num is the number of images. Images are made --batch-size at a time: batch 0 uses --seed
itself (so the same seed on a CPU gives the official sampler's tokens), batch b a seed derived from
(--seed, b). --out-dir streams one PNG per image as it is made and skips files that already exist, so
re-running an interrupted command resumes it with the same images; the settings that decide the images
(model, classes or prompts, --num, --batch-size, seed, sampling flags, --dtype, device) are kept in its
sample-settings.json, and a re-run with other settings is refused rather than mixed in. A grid (--out: .png,
.jpg or .webp) is made for at most 1024 images; write larger runs with --out-dir. --class all samples every class.
--npz packs the run's images in order into one .npz as guided-diffusion's evaluation suite reads them (arr_0
uint8 (N, H, W, 3) RGB, arr_1 the class labels), streamed: with --out-dir from the PNGs, so a resumed run packs
every image. Under torchrun each process makes every WORLD_SIZE-th batch (with --device cuda on
cuda:LOCAL_RANK) into the shared --out-dir; the images are the same as one process makes, since batch b's seed
depends only on (seed, b).
With --prompt, --num is the number of images per prompt and --out-dir writes {index:04d}.png plus
prompts.txt (one prompt per image, in order). --text-features reads precomputed text-encoder outputs
(tensors prompt_embeds (B, T, D), pooled_prompt_embeds (B, D), optional prompt_attention_mask (B, T) and
the same three negative_*), for folders converted without a text encoder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nextscale.cli.common import (
    add_classes_argument,
    add_model_argument,
    add_sampling_arguments,
    check_image_output,
    check_output_dir,
    check_output_file,
    check_sampling_flags,
    load_pipeline,
    sampling_kwargs,
    save_image,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from nextscale.distributed import DistInfo
    from nextscale.sampling.pipeline import Pipeline

DEFAULT_GRID = Path("samples.png")
SETTINGS_FILE = "sample-settings.json"  # in --out-dir: what made its images, so a re-run resumes only the same run
SAMPLE_IMAGE = re.compile(r"\d{4,}(_class\d+)?\.png")  # the names image_name gives
MAX_GRID_IMAGES = 1024  # one PNG of more tiles is unreadable and holds every image in memory at once


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    condition = parser.add_mutually_exclusive_group()
    add_classes_argument(
        condition, help="class ids or names to sample, or 'all' (class models; default: drawn at random)"
    )
    condition.add_argument("--prompt", nargs="+", default=None, metavar="TEXT", help="prompts (text models)")
    condition.add_argument(
        "--text-features", type=Path, default=None, metavar="FILE", help="precomputed text features (safetensors)"
    )
    parser.add_argument(
        "--negative-prompt",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="one negative prompt for all, or one per prompt (text models; default: the empty prompt)",
    )
    parser.add_argument(
        "--num",
        type=int,
        default=1,
        help="images per class or prompt (or the number of images without --class; default: 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="images made per model call (default: 32; lower it if memory runs out)",
    )
    add_sampling_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"image grid (.png, .jpg, .jpeg or .webp), labelled with class names when the model has them "
        f"(default: {DEFAULT_GRID} unless --out-dir, --npz or --show-scales is given; at most {MAX_GRID_IMAGES} "
        "images)",
    )
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: --num or 8)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="write one PNG per image as it is made: {index:04d}_class{label}.png, or {index:04d}.png + "
        f"prompts.txt, and the settings in {SETTINGS_FILE}; files already there are skipped, so re-running the "
        "same command resumes (other settings are refused)",
    )
    parser.add_argument(
        "--save-tokens",
        type=Path,
        default=None,
        help="write the (B, L) tokens as a safetensors file with one tensor named 'tokens'",
    )
    parser.add_argument(
        "--show-scales",
        type=Path,
        default=None,
        metavar="GRID",
        help="also write a coarse-to-fine grid: one row per image, one column per scale, each tile the image "
        "the tokens of the first k scales decode to (the last column is the sample); .png, .jpg or .webp",
    )
    parser.add_argument(
        "--npz",
        type=Path,
        default=None,
        help="also pack the images into one .npz for OpenAI's evaluation suite: arr_0 uint8 (N, H, W, 3) RGB, "
        "arr_1 the labels (class models)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def read_text_features(path: Path) -> dict:
    """The pipeline call's precomputed-feature arguments from a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nextscale.sampling.pipeline import TEXT_INPUTS

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (--text-features expects a safetensors file)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from err
    unknown = sorted(set(tensors) - set(TEXT_INPUTS))
    if unknown or "prompt_embeds" not in tensors:
        raise ValueError(
            f"{path} must hold prompt_embeds and pooled_prompt_embeds (optionally prompt_attention_mask and the "
            f"negative_* three); unexpected {unknown}"
        )
    return tensors


def check_grid_size(count: int, grid: Path | None) -> None:
    if grid is not None and count > MAX_GRID_IMAGES:
        raise ValueError(
            f"a grid of {count} images is too large for one PNG (at most {MAX_GRID_IMAGES}); write one PNG per "
            "image with --out-dir DIR instead (without --out)"
        )


def batch_seed(seed: int | None, batch_idx: int) -> int | None:
    """Batch 0 uses the seed itself (the official draws); batch b > 0 a seed derived from (seed, b), so that
    each batch is reproducible on its own and a resumed run makes the same images."""
    import numpy as np

    if seed is None or batch_idx == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**64, batch_idx]).generate_state(1, np.uint64)[0] >> 1)


class Plan:
    """Which condition each image gets: ``inputs(start, end)`` are the pipeline arguments of images
    start..end-1, ``labels[i]`` the class of image i when known before sampling, ``prompts`` one per image."""

    def __init__(self, args: argparse.Namespace, pipe, features: dict) -> None:
        self.labels = self.prompts = self.features = self.negative = None
        num = args.num
        if args.classes is not None:
            self.labels = [label for label in resolve_classes(pipe, args.classes) for _ in range(num)]
            self.count = len(self.labels)
        elif args.prompt is not None:
            self.prompts = [text for text in args.prompt for _ in range(num)]
            self.count = len(self.prompts)
            negative = args.negative_prompt
            if negative is not None and len(negative) not in (1, len(args.prompt)):
                raise ValueError(f"give 1 or {len(args.prompt)} --negative-prompt values, got {len(negative)}")
            if negative is not None and len(negative) > 1:
                negative = [text for text in negative for _ in range(num)]
            self.negative = negative
        elif features:
            # conditional rows repeat per image, like prompts; a single negative row serves every image
            self.count = features["prompt_embeds"].shape[0] * num
            self.features = {
                key: value if key.startswith("negative") and value.shape[0] == 1 else value.repeat_interleave(num, 0)
                for key, value in features.items()
            }
        else:
            self.count = num

    def inputs(self, start: int, end: int) -> dict:
        if self.labels is not None:
            return {"class_labels": self.labels[start:end]}
        if self.prompts is not None:
            negative = self.negative if self.negative is None or len(self.negative) == 1 else self.negative[start:end]
            given = {} if negative is None else {"negative_prompt": negative}
            return {"prompt": self.prompts[start:end], **given}
        if self.features is not None:
            return {
                key: value if value.shape[0] != self.count else value[start:end] for key, value in self.features.items()
            }
        return {"class_labels": None, "num_images_per_prompt": end - start}  # labels drawn by the generator


def names_every_class(classes: list | None) -> bool:
    """Whether --class says ``all``."""
    return classes is not None and any(str(value).lower() == "all" for value in classes)


def resolve_classes(pipe: Pipeline, classes: list) -> list[int]:
    """--class values as ids; ``all`` is every class in order (the FID sets: N images of each class)."""
    if names_every_class(classes):
        if len(classes) > 1:
            raise ValueError("--class all already names every class; give it alone")
        return list(range(pipe.num_classes))
    return pipe.class_ids(classes)


def image_name(index: int, label: int | None) -> str:
    return f"{index:04d}.png" if label is None else f"{index:04d}_class{label}.png"


def written_image(out_dir: Path, index: int, plan: Plan, text: bool) -> Path | None:
    """The PNG of image ``index`` in --out-dir, or None when it is not there yet or is damaged (it is made again)."""
    if text or plan.labels is not None:
        path = out_dir / image_name(index, None if text else plan.labels[index])
        return path if path.is_file() and intact_png(path) else None
    found = next(iter(out_dir.glob(f"{index:04d}_class*.png")), None)  # drawn labels: named only after sampling
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


def already_written(out_dir: Path, index: int, plan: Plan, text: bool) -> bool:
    return written_image(out_dir, index, plan, text) is not None


def image_settings(args: argparse.Namespace, pipe, sampling: dict, seed: int | None) -> dict:
    """The settings that decide an --out-dir run's images, by flag (a re-run must match them to resume)."""
    import torch

    model = args.model if args.model is not None else ("bundled:scenes" if pipe.is_text_conditional else None)
    model = str(model or "bundled:fashion-mnist")
    features = None
    if args.text_features is not None:
        features = f"{args.text_features.name} (sha256 {hashlib.sha256(args.text_features.read_bytes()).hexdigest()})"
    return {
        "--model": model if model.startswith("bundled:") else str(Path(model).resolve()),
        "--class": None if args.classes is None else resolve_classes(pipe, args.classes),
        "--prompt": args.prompt,
        "--negative-prompt": args.negative_prompt,
        "--text-features": features,
        "--num": args.num,
        "--batch-size": args.batch_size,  # batch b's seed is derived from (seed, b)
        "--seed": seed,
        **{f"--{name.replace('_', '-')}": value for name, value in sampling.items()},
        "--dtype": pipe.precision.name,
        "--device": torch.device(args.device).type,  # CPU and CUDA generators draw different numbers
    }


def _shown(value) -> str:
    """A recorded setting as it is typed on the command line (shortened)."""
    if value is None or isinstance(value, bool):
        text = "none" if value is None else "on" if value else "off"
    else:
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 100 else f"{text[:48]}...{text[-48:]}"  # a path's end tells most


def check_out_dir_settings(out_dir: Path, settings: dict) -> None:
    """Record ``settings`` in --out-dir; refuse a folder whose images were made with other settings.

    Resuming skips the images already there, so a run with another seed, cfg or model would keep the old
    images under the new run's names: a silent mix. A folder of sample images without a record (from an older
    version) is refused too, since what made them is unknown.
    """
    from nextscale.pretrained import atomic_write_text

    record = out_dir / SETTINGS_FILE
    if out_dir.is_dir() and any(SAMPLE_IMAGE.fullmatch(path.name) for path in out_dir.iterdir()):
        if not record.is_file():
            raise ValueError(
                f"--out-dir {out_dir} holds sample images but no {SETTINGS_FILE} saying how they were made, so "
                "new ones could not be told apart; choose another --out-dir, or delete those images"
            )
        try:
            recorded = json.loads(record.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{record} is not valid JSON ({err}); delete it, or choose another --out-dir") from err
        changed = [
            f"{flag} {_shown(recorded.get(flag))}, now {_shown(value)}"
            for flag, value in settings.items()
            if recorded.get(flag) != value
        ]
        if changed:
            raise ValueError(
                f"--out-dir {out_dir} holds images made with other settings ({'; '.join(changed)}); re-run with "
                "those settings to resume, or choose another --out-dir"
            )
        return
    atomic_write_text(record, json.dumps(settings, indent=2) + "\n")


def scale_views(pipe: Pipeline, tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) tokens -> (B * scales, C, H, W) images in [-1, 1], image-major: what the first k scales of each
    image decode to, for k = 1 .. the number of scales."""
    import torch

    tokenizer = pipe.tokenizer
    device = next(tokenizer.parameters()).device
    rows = []
    with torch.inference_mode():
        for chunk in torch.split(tokens, 16):  # one decoder pass per scale and image: a few images at a time
            views = tokenizer.decode_scales(tokenizer.indices_from_tokens(chunk.to(device)))
            rows.append(torch.stack([images.float().cpu() for images in views], dim=1).flatten(0, 1))
    return torch.cat(rows)


def scale_grid(pipe: Pipeline, tokens: torch.Tensor, names: list[str] | None = None, zoom: int = 1) -> Image.Image:
    """One row per image, one column per scale (see :func:`scale_views`), each tile labelled with its scale, or
    the first of a row with the image's name when ``names`` are given; tiles enlarged ``zoom`` times."""
    from nextscale.cli.demo import enlarge
    from nextscale.data.images import make_grid

    sides = pipe.tokenizer.config.scale_sides
    rows = names if names is not None else [None] * len(tokens)
    labels = [name if k == 0 and name else f"{side}x{side}" for name in rows for k, side in enumerate(sides)]
    views = scale_views(pipe, tokens)
    return make_grid(enlarge(views, zoom) if zoom > 1 else views, nrow=len(sides), labels=labels)


def pack_npz(out_dir: Path, plan: Plan, text: bool, path: Path, side: int, progress: bool) -> None:
    """Stream the run's PNGs from --out-dir, in index order, into ``path`` (see ``data.sample_sets``)."""
    import numpy as np
    from tqdm.auto import tqdm

    from nextscale.data.sample_sets import NpzImageWriter, open_sample_image, sample_label

    def image_path(index: int) -> Path:
        found = written_image(out_dir, index, plan, text)
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


def run(args: argparse.Namespace) -> int:
    from nextscale import distributed
    from nextscale.cli.common import check_device

    check_sampling_flags(args)
    check_device(args.device)
    with distributed.process_group(device=args.device) as dist_info:
        if dist_info.is_distributed:
            if args.out_dir is None:
                raise ValueError(
                    "under torchrun every process writes its images to one --out-dir: give --out-dir DIR "
                    "(and --npz FILE for one archive)"
                )
            if args.out is not None or args.save_tokens is not None or args.show_scales is not None:
                raise ValueError(
                    "--out, --save-tokens and --show-scales need every image in one process; under torchrun write "
                    "--out-dir (and --npz), or run them without torchrun"
                )
            args.device = str(dist_info.device)  # cuda:LOCAL_RANK on a GPU node
        pack = sample(args, dist_info)
    if pack is not None:  # rank 0 alone, after the group is gone: no peer waits on it (and times out)
        pack()
    return 0


def sample(args: argparse.Namespace, dist_info: DistInfo) -> Callable[[], None] | None:
    """Make this process's batches and write what was asked for; returns the packing of --out-dir into --npz
    (rank 0, to run once every process has left the group), or None."""
    import torch
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from nextscale import distributed
    from nextscale.data.images import make_grid, to_pil
    from nextscale.data.sample_sets import NpzImageWriter
    from nextscale.pretrained import atomic_write, atomic_write_text

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.nrow is not None and args.nrow < 1:
        raise ValueError(f"--nrow must be >= 1, got {args.nrow}")
    if args.prompt is not None and any(not text.strip() for text in args.prompt):
        raise ValueError("--prompt got an empty prompt; give some text for every prompt")
    text = args.prompt is not None or args.text_features is not None
    # a run written as files (or shown scale by scale) needs no default grid
    files = args.out_dir is not None or args.npz is not None or args.show_scales is not None
    grid_path = args.out if args.out is not None else (None if files else DEFAULT_GRID)
    if args.text_features is None and not names_every_class(
        args.classes
    ):  # the count is known before loading: refuse early
        groups = len(args.classes or args.prompt or []) or 1
        check_grid_size(groups * args.num, grid_path)
    if grid_path is not None:
        check_image_output(grid_path, "--out")
    if args.save_tokens is not None:
        check_output_file(args.save_tokens, "--save-tokens", example="tokens.safetensors")
    if args.show_scales is not None:
        check_image_output(args.show_scales, "--show-scales")
    if args.npz is not None:
        check_output_file(args.npz, "--npz", example="samples.npz")
        if args.npz.suffix.lower() != ".npz":
            raise ValueError(f"--npz {args.npz}: give a file name ending in .npz, e.g. samples.npz")
    if args.out_dir is not None:
        check_output_dir(args.out_dir, "--out-dir")
    features = read_text_features(args.text_features) if args.text_features is not None else {}
    pipe = load_pipeline(args)
    if text != pipe.is_text_conditional:
        raise ValueError(
            "this model is text-conditional: give --prompt"
            if pipe.is_text_conditional
            else "this model is class-conditional: give --class (or nothing), not --prompt / --text-features"
        )
    if args.negative_prompt is not None and args.prompt is None:
        raise ValueError("--negative-prompt goes with --prompt")
    plan = Plan(args, pipe, features)
    check_grid_size(plan.count, grid_path)
    scales = len(pipe.tokenizer.config.scale_sides)
    if args.show_scales is not None and plan.count * scales > MAX_GRID_IMAGES:
        raise ValueError(
            f"--show-scales draws {scales} tiles per image: at most {MAX_GRID_IMAGES // scales} images, got "
            f"{plan.count}; lower --num or the number of classes"
        )
    sampling = sampling_kwargs(args)
    seed = sampling.pop("seed")
    if args.out_dir is not None:
        check_out_dir_settings(args.out_dir, image_settings(args, pipe, sampling, seed))
        distributed.barrier()  # every process has checked the folder before any writes into it
    if plan.prompts is not None and args.out_dir is not None and dist_info.is_main:
        atomic_write_text(args.out_dir / "prompts.txt", "".join(f"{p}\n" for p in plan.prompts))

    # Batch b is made by process b mod WORLD_SIZE; its seed depends only on (seed, b), so the images do not
    # depend on how many processes share the run.
    starts = list(range(0, plan.count, args.batch_size))
    mine = [
        (batch_idx, start)
        for batch_idx, start in enumerate(starts)
        if batch_idx % dist_info.world_size == dist_info.rank
    ]
    keep_all = grid_path is not None or args.save_tokens is not None or args.show_scales is not None
    stream_npz = args.npz is not None and args.out_dir is None  # with --out-dir the PNGs are packed at the end
    images, tokens, labels = [], [], []
    skipped = written = 0
    progress = not args.no_progress and dist_info.is_main
    my_count = sum(min(start + args.batch_size, plan.count) - start for _, start in mine)
    archive = NpzImageWriter(args.npz, plan.count, pipe.image_size) if stream_npz else contextlib.nullcontext()
    with archive, tqdm(total=my_count, desc="sample", unit="img", disable=None if progress else True) as bar:
        for batch_idx, start in mine:
            end = min(start + args.batch_size, plan.count)
            done = args.out_dir is not None and all(
                already_written(args.out_dir, i, plan, text) for i in range(start, end)
            )
            if done and not keep_all:
                skipped += end - start
                bar.update(end - start)
                continue
            out = pipe(**plan.inputs(start, end), output_type="pt", seed=batch_seed(seed, batch_idx), **sampling)
            batch_labels = out.class_labels.tolist() if out.class_labels is not None else [None] * (end - start)
            if args.out_dir is not None:
                for offset, picture in enumerate(to_pil(out.images * 2 - 1)):
                    index = start + offset
                    if already_written(args.out_dir, index, plan, text):
                        skipped += 1
                        continue
                    path = args.out_dir / image_name(index, batch_labels[offset])
                    atomic_write(path, lambda tmp, picture=picture: picture.save(tmp, format="PNG"))
                    written += 1
            if stream_npz:
                archive.add(out.images * 2 - 1, None if text else batch_labels)
            if keep_all:
                images.append(out.images.cpu())
                tokens.append(out.tokens.cpu())
                labels.extend(batch_labels)
            bar.update(end - start)
    distributed.barrier()  # every process's images are on disk
    counts = torch.tensor([written, skipped], device=dist_info.device)  # NCCL reduces only GPU tensors
    written, skipped = (int(n) for n in distributed.all_reduce_sum(counts))
    if not dist_info.is_main:
        return None

    if grid_path is not None:
        per_group = args.num > 1 and (args.classes or text)
        nrow = args.nrow or (args.num if per_group else min(8, plan.count))
        names = None if pipe.class_names is None or text else [pipe.class_names[label] for label in labels]
        pictures = torch.cat(images) * 2 - 1
        # one unlabelled image is written as itself (a grid of one would only add a frame)
        lone = plan.count == 1 and names is None
        save_image(to_pil(pictures)[0] if lone else make_grid(pictures, nrow=nrow, labels=names), grid_path)
        if text:
            described = f"{plan.count // args.num} prompt{'s' * (plan.count // args.num != 1)}"
        else:
            shown = sorted(set(labels))
            described = "classes " + ", ".join(
                f"{label} {pipe.class_names[label]}" if pipe.class_names else str(label) for label in shown
            )
        print(f"wrote {plan.count} image{'s' * (plan.count != 1)} to {grid_path} ({described})")
    if args.out_dir is not None:
        note = f"; skipped {skipped} already there" if skipped else ""
        by = f" by {dist_info.world_size} processes" if dist_info.is_distributed else ""
        print(f"wrote {written} PNGs (one per image) to {args.out_dir}/{by}{note}")
    packed = f"wrote {plan.count} images ({pipe.image_size}x{pipe.image_size} RGB uint8) to {args.npz}"
    if args.npz is not None and args.out_dir is None:
        print(packed)
    if args.show_scales is not None:
        save_image(scale_grid(pipe, torch.cat(tokens)), args.show_scales)
        print(f"wrote the coarse-to-fine view of {plan.count} images to {args.show_scales}")
    if args.save_tokens is not None:
        all_tokens = torch.cat(tokens).contiguous()
        atomic_write(args.save_tokens, lambda tmp: save_file({"tokens": all_tokens}, tmp))
        print(f"wrote tokens {tuple(all_tokens.shape)} to {args.save_tokens}")
    if args.npz is None or args.out_dir is None:
        return None

    def pack() -> None:
        pack_npz(args.out_dir, plan, text, args.npz, pipe.image_size, progress)
        print(packed)

    return pack
