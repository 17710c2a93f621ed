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
    torchrun --nproc-per-node 8 -m nextscale sample --model var-d16/ --class all --num-images 50 --batch-size 64 \\
        --seed 0 --cfg 1.5 --top-k 900 --top-p 0.96 --device cuda --out-dir fid50k/ --npz fid50k.npz

--class takes ids or the class names the model records (pipeline.json "class_names"); grids are labelled
with the names. Without --class, labels are drawn from the seeded generator (the official sampler's first
draw) and --num is the number of images. Images are made --batch-size at a time: batch 0 uses --seed
itself (so the same seed on a CPU gives the official sampler's tokens), batch b a seed derived from
(--seed, b). --out-dir streams one PNG per image as it is made and skips files that already exist, so
re-running an interrupted command resumes it (with --seed, with the same images: without one, each run draws
the missing images afresh); the settings that decide the images
(model, classes or prompts, --num, --batch-size, seed, sampling flags, --dtype, device) are kept in its
sample-settings.json, and a re-run with other settings is refused rather than mixed in. A grid (--out: .png,
.jpg or .webp) is made for at most 1024 images; write larger runs with --out-dir. --class all samples every class.
--npz packs the run's images in order into one .npz as guided-diffusion's evaluation suite reads them (arr_0
uint8 (N, H, W, 3) RGB, arr_1 the class labels), streamed: with --out-dir from the PNGs, so a resumed run packs
every image. Under torchrun each process makes every WORLD_SIZE-th batch (with --device cuda on
cuda:LOCAL_RANK) into the shared --out-dir; with --seed the images are the same as one process makes, since batch
b's seed depends only on (seed, b) (bit for bit at the same CPU thread count: torchrun sets OMP_NUM_THREADS=1).
With --prompt, --num is the number of images per prompt and --out-dir writes {index:04d}.png plus
prompts.txt (one prompt per image, in order; with --text-features, the features row of each). --prompt ""
(the empty prompt, the unconditional input guidance trains for) samples unconditionally: "(empty prompt)" in the
grid, an empty line in prompts.txt. --text-features
reads precomputed text-encoder outputs (tensors prompt_embeds (B, T, D), pooled_prompt_embeds (B, D), optional
prompt_attention_mask (B, T) and the same three negative_*), for folders converted without a text encoder.
"""

from __future__ import annotations

import argparse
import contextlib
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
from nextscale.cli.sample_files import (
    SETTINGS_FILE,
    already_written,
    check_out_dir_settings,
    drawn_label_images,
    holds_sample_images,
    image_name,
    image_settings,
    interrupted_note,
    pack_npz,
)
from nextscale.cli.sample_plan import Plan, batch_seed, names_every_class, read_text_features
from nextscale.cli.sample_scales import scale_grid
from nextscale.data.grids import LABEL_CHARACTERS, prompt_label

if TYPE_CHECKING:
    from nextscale.distributed import DistInfo

DEFAULT_GRID = Path("samples.png")
MAX_GRID_IMAGES = 1024  # one PNG of more tiles is unreadable and holds every image in memory at once
GRID_FORMAT_LIMITS = {"JPEG": 65535, "WEBP": 16383}  # the most pixels a side these formats hold (PNG: no limit)
EMPTY_PROMPT_LABEL = "(empty prompt)"  # the grid label of --prompt "" (prompts.txt keeps the exact, empty line)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    condition = parser.add_mutually_exclusive_group()
    add_classes_argument(
        condition, help="class ids or names to sample, or 'all' (class models; default: drawn at random)"
    )
    condition.add_argument(
        "--prompt",
        nargs="+",
        default=None,
        metavar="TEXT",
        help='prompts (text models; "" is the empty prompt: an unconditional sample)',
    )
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
        "--num-images",
        type=int,
        default=1,
        help="images per class or prompt (or the number of images without --class; default: 1); under torchrun "
        "spell it --num-images (torchrun takes --num for its own --numa-binding)",
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
        f"(default: {DEFAULT_GRID} unless --out-dir, --npz, --show-scales or --save-tokens is given; at most "
        f"{MAX_GRID_IMAGES} images)",
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
        "the tokens of the first k scales decode to (the last column is the sample; with --smooth, the image of "
        "the drawn tokens, before smoothing mixes codes); .png, .jpg or .webp",
    )
    parser.add_argument(
        "--npz",
        type=Path,
        default=None,
        help="also pack the images into one .npz for OpenAI's evaluation suite: arr_0 uint8 (N, H, W, 3) RGB, "
        "arr_1 the labels (class models)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_blank_prompts(prompts: list[str]) -> None:
    """Refuse a prompt of blanks only (a quoting slip, most likely); the empty prompt "" itself is the model's
    unconditional input (what classifier-free guidance trains for), so it samples unconditionally, as in ``edit``
    and ``pipe(prompt=[""])``."""
    for number, text in enumerate(prompts, start=1):
        if text and not text.strip():
            raise ValueError(
                f'--prompt {number} holds only blanks ({text!r}); give some text, or "" (the empty prompt) for '
                "an unconditional sample"
            )


def grid_label(prompt: str) -> str:
    """A prompt as its grid label: cut to one short line; the empty prompt is named, as a blank label would not."""
    return prompt_label(prompt) if prompt else EMPTY_PROMPT_LABEL


def grid_labels(prompts: list[str]) -> list[str]:
    """One label per image: ``grid_label``, except that prompts whose cut labels would read the same are shown from
    the word where they start to differ ("...bottom right" / "...top right" for two scenes that share their first
    item), so that each row of the grid can be told from the others."""
    import os

    labels = {prompt: grid_label(prompt) for prompt in prompts}
    for label in set(labels.values()):
        alike = [prompt for prompt in labels if labels[prompt] == label]
        if len(alike) < 2:
            continue
        words = [" ".join(prompt.split()) for prompt in alike]
        shared = os.path.commonprefix(words)
        start = shared.rfind(" ") + 1 if " " in shared else 0  # from the start of the first differing word
        for prompt, text in zip(alike, words, strict=True):
            tail = text[start:]  # as long as the cut labels: the cells keep their width
            tail = tail if len(tail) <= LABEL_CHARACTERS - 3 else tail[: LABEL_CHARACTERS - 6] + "..."
            labels[prompt] = "..." + tail if start else labels[prompt]
    return [labels[prompt] for prompt in prompts]


def check_grid_size(count: int, grid: Path | None) -> None:
    if grid is not None and count > MAX_GRID_IMAGES:
        raise ValueError(
            f"a grid of {count} images is too large for one PNG (at most {MAX_GRID_IMAGES}); write one PNG per "
            "image with --out-dir DIR instead (without --out)"
        )


def check_grid_pixels(grid: Path | None, flag: str, count: int, nrow: int, side: int) -> None:
    """Refuse, before sampling, a grid wider or taller than its format holds (JPEG 65535 px a side, WebP 16383:
    64 tiles of 256 px in a row are too wide for WebP). Tiles only: labels can widen cells, never narrow them."""
    from nextscale.cli.common import IMAGE_FORMATS

    image_format = IMAGE_FORMATS.get(grid.suffix.lower()) if grid is not None else None
    limit = GRID_FORMAT_LIMITS.get(image_format)
    if limit is None:
        return
    columns = min(nrow, count)
    rows = -(-count // columns)
    width, height = (cells * (side + 2) + 2 for cells in (columns, rows))  # make_grid's 2-px padding
    if max(width, height) > limit:
        fits = (limit - 2) // (side + 2)
        fix = f"give --nrow so that rows and columns hold {fits} images at most"
        fix = f"sample at most {fits} images" if flag == "--show-scales" else fix  # one row per image
        raise ValueError(
            f"{flag} {grid}: {count} {side}-px images in rows of {columns} make a {width}x{height} px grid, more "
            f"than {image_format} holds ({limit} px a side); {fix}, or write a .png"
        )


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
    from nextscale.data.grids import make_grid, to_pil
    from nextscale.data.sample_sets import NpzImageWriter
    from nextscale.evaluation.generate import check_one_line_prompts
    from nextscale.pretrained import atomic_write, atomic_write_text

    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.nrow is not None and args.nrow < 1:
        raise ValueError(f"--nrow must be >= 1, got {args.nrow}")
    if args.prompt is not None:  # --out-dir's prompts.txt holds one per line; refused for every output alike
        check_blank_prompts(args.prompt)
        check_one_line_prompts(args.prompt, what="--prompt")
    text = args.prompt is not None or args.text_features is not None
    # a run written as files (or shown scale by scale, or kept as tokens) needs no default grid
    outputs_asked = (args.out_dir, args.npz, args.show_scales, args.save_tokens)
    files = any(path is not None for path in outputs_asked)
    grid_path = args.out if args.out is not None else (None if files else DEFAULT_GRID)
    if args.text_features is None and not names_every_class(
        args.classes
    ):  # the count is known before loading: refuse early
        groups = len(args.classes or args.prompt or []) or 1
        check_grid_size(groups * args.num, grid_path)
    outputs = {"--out" if args.out is not None else "the default --out": grid_path, "--npz": args.npz}
    outputs |= {"--show-scales": args.show_scales, "--save-tokens": args.save_tokens}
    first_flag: dict[Path, str] = {}
    for flag, path in outputs.items():  # else the later write replaces the earlier one, and both are reported
        if path is not None and first_flag.setdefault(path.resolve(), flag) != flag:
            raise ValueError(f"{first_flag[path.resolve()]} and {flag} name the same file {path}; give each its own")
    if args.out is not None and not args.out.suffix and not args.out.exists():  # `--out samples/`: a folder meant
        raise ValueError(
            f"--out {args.out} has no image extension: --out is the grid's image file (e.g. {args.out}.png); "
            f"--out-dir {args.out} writes one PNG per image"
        )
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
            'this model is text-conditional: give --prompt TEXT (--prompt "" draws unconditional samples)'
            if pipe.is_text_conditional
            else "this model is class-conditional: give --class (or nothing), not --prompt / --text-features"
        )
    if args.negative_prompt is not None and args.prompt is None:
        raise ValueError("--negative-prompt goes with --prompt")
    if args.show_scales is not None and len(pipe.tokenizer.config.scale_sides) == 1:
        raise ValueError(
            "--show-scales draws the image after each scale, but this model has one scale (the raster baseline draws "
            "one token map, token by token): leave out --show-scales"
        )
    plan = Plan(args, pipe, features)
    check_grid_size(plan.count, grid_path)
    scales = len(pipe.tokenizer.config.scale_sides)
    if args.show_scales is not None and plan.count * scales > MAX_GRID_IMAGES:
        raise ValueError(
            f"--show-scales draws {scales} tiles per image: at most {MAX_GRID_IMAGES // scales} images, got "
            f"{plan.count}; lower --num or the number of classes"
        )
    per_group = args.num > 1 and (args.classes or text)
    nrow = args.nrow or (args.num if per_group else min(8, plan.count))
    check_grid_pixels(grid_path, "--out", plan.count, nrow, pipe.image_size)
    check_grid_pixels(args.show_scales, "--show-scales", plan.count * scales, scales, pipe.image_size)
    sampling = sampling_kwargs(args)
    seed = sampling.pop("seed")
    keep_all = grid_path is not None or args.save_tokens is not None or args.show_scales is not None
    if args.out_dir is not None:
        check_out_dir_settings(args.out_dir, image_settings(args, pipe, sampling, seed))
        if seed is None and keep_all and holds_sample_images(args.out_dir):
            # a resume makes only the missing images, and without a seed the others come out differently
            raise ValueError(
                f"--out-dir {args.out_dir} already holds images of a run without --seed: a re-run would put other "
                "images in --out, --save-tokens or --show-scales than those files; resume without those flags, or "
                "give --seed (and a new --out-dir)"
            )
        distributed.barrier()  # every process has checked the folder before any writes into it
    conditions = plan.prompts
    if conditions is None and plan.features is not None:  # no text to write: say which features row each used
        rows = plan.count // args.num
        conditions = [f"(row {row} of {args.text_features})" for row in range(rows) for _ in range(args.num)]
    if conditions is not None and args.out_dir is not None and dist_info.is_main:
        atomic_write_text(args.out_dir / "prompts.txt", "".join(f"{line}\n" for line in conditions))

    # Batch b is made by process b mod WORLD_SIZE; its seed depends only on (seed, b), so the images do not
    # depend on how many processes share the run.
    starts = list(range(0, plan.count, args.batch_size))
    mine = [
        (batch_idx, start)
        for batch_idx, start in enumerate(starts)
        if batch_idx % dist_info.world_size == dist_info.rank
    ]
    stream_npz = args.npz is not None and args.out_dir is None  # with --out-dir the PNGs are packed at the end
    images, tokens, labels = [], [], []
    skipped = written = 0
    progress = not args.no_progress and dist_info.is_main
    my_count = sum(min(start + args.batch_size, plan.count) - start for _, start in mine)
    archive = NpzImageWriter(args.npz, plan.count, pipe.image_size) if stream_npz else contextlib.nullcontext()
    # drawn labels name an image only once it is made: list the folder once, not once per image
    drawn = args.out_dir is not None and not text and plan.labels is None
    listing = drawn_label_images(args.out_dir) if drawn else None
    try:
        with archive, tqdm(total=my_count, desc="sample", unit="img", disable=None if progress else True) as bar:
            for batch_idx, start in mine:
                end = min(start + args.batch_size, plan.count)
                done = args.out_dir is not None and all(
                    already_written(args.out_dir, i, plan, text, listing) for i in range(start, end)
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
                        if already_written(args.out_dir, index, plan, text, listing):
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
    except KeyboardInterrupt:  # the PNGs written so far are whole and kept: say so, and whether a re-run resumes
        resumable = not (seed is None and keep_all)
        note = interrupted_note(args.out_dir, written, skipped, plan.count, resumable)
        raise KeyboardInterrupt(note) from None
    distributed.barrier()  # every process's images are on disk
    counts = torch.tensor([written, skipped], device=dist_info.device)  # NCCL reduces only GPU tensors
    written, skipped = (int(n) for n in distributed.all_reduce_sum(counts))
    if not dist_info.is_main:
        return None

    if grid_path is not None:
        if text:  # prompts under their images (none for rows of --text-features)
            names = None if plan.prompts is None else grid_labels(plan.prompts)
        else:
            names = None if pipe.class_names is None else [pipe.class_names[label] for label in labels]
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
        print(f"wrote {written} PNG{'s' * (written != 1)} (one per image) to {args.out_dir}/{by}{note}")
    size = f"{pipe.image_size}x{pipe.image_size} RGB uint8"
    packed = f"wrote {plan.count} image{'s' * (plan.count != 1)} ({size}) to {args.npz}"
    if args.npz is not None and args.out_dir is None:
        print(packed)
    if args.show_scales is not None:
        save_image(scale_grid(pipe, torch.cat(tokens)), args.show_scales)
        # --smooth's images mix codes; its tokens are the multinomial draws, which is what these tiles decode
        drawn = " (of the drawn tokens: the smoothed samples differ)" if args.smooth else ""
        print(
            f"wrote the coarse-to-fine view of {plan.count} image{'s' * (plan.count != 1)} to {args.show_scales}{drawn}"
        )
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
