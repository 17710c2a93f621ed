"""``--resolution`` and the data report that train-tokenizer, tokenize and train log before they start (its data
lines are also what ``nextscale info DATA`` prints).

The schedule a resolution implies is ``nextscale.scales.default_scale_sides`` of ``resolution / downsampling``
(sides doubling from 1 to the latent side: 32 px with the 4x tokenizers here -> 1,2,4,8, 85 tokens); an
explicit ``--scale-sides`` sets it exactly. The report's lines are described in ``nextscale.data.summary``.
"""

from __future__ import annotations

import argparse

RESOLUTION_HELP = (
    "image side in pixels; picks the scale schedule: sides doubling from 1 to PX / downsampling, e.g. 32 -> "
    "1,2,4,8 with 4x downsampling (default: the {default}'s; --scale-sides sets the sides exactly)"
)


def add_resolution_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str) -> None:
    """``--resolution PX`` into ``args.resolution`` (None when absent)."""
    parser.add_argument("--resolution", type=int, metavar="PX", help=RESOLUTION_HELP.format(default=default))


def scale_sides_for(
    resolution: int | None, scale_sides: tuple[int, ...] | None, downsample: int
) -> tuple[int, ...] | None:
    """The schedule that --resolution and --scale-sides ask for; None keeps the preset's (tokenizer's) own.

    Args:
        resolution: --resolution, or None.
        scale_sides: --scale-sides, or None.
        downsample: pixels per token of the tokenizer (2 ** (levels - 1)).
    """
    from nextscale.scales import default_scale_sides

    if resolution is None:
        return scale_sides
    if resolution < downsample or resolution % downsample:
        nearest = max(downsample, round(resolution / downsample) * downsample)
        raise ValueError(
            f"--resolution {resolution} is not a multiple of the tokenizer's downsampling factor {downsample}; "
            f"pass e.g. --resolution {nearest}"
        )
    if scale_sides is not None:
        if scale_sides[-1] * downsample != resolution:
            raise ValueError(
                f"--scale-sides {','.join(map(str, scale_sides))} make {scale_sides[-1] * downsample} px images "
                f"with this tokenizer, but --resolution is {resolution}; give one of the two"
            )
        return tuple(scale_sides)
    return default_scale_sides(resolution // downsample)


def schedule_source(args: argparse.Namespace, default: str) -> str:
    """Where the schedule came from, for the report: the flag that set it, else ``default`` ("preset tiny")."""
    if getattr(args, "scale_sides", None) is not None:
        return "--scale-sides " + ",".join(map(str, args.scale_sides))
    if getattr(args, "resolution", None) is not None:
        return f"--resolution {args.resolution}"
    return default


def log_data_report(
    tokenizer_config,
    source: str,
    train_set,
    held_out_set=None,
    data_spec: str | None = None,
    role: str = "training",
    held_out_flags: str = "--eval-data or --eval-tokens",
    trained_side: int | None = None,
) -> None:
    """Log (INFO, rank 0) the data summary and the ``images AxA -> tokens: scales ...`` line.

    Args:
        tokenizer_config: the tokenizer's config (image size, channels, schedule, downsampling).
        source: where the schedule came from (``schedule_source``).
        train_set: the dataset trained on or tokenized.
        held_out_set: the evaluation dataset, or None.
        data_spec: --data, to explain a held-out split carved from a folder.
        role: what ``train_set`` is for ("training", or the tokenized split).
        held_out_flags: the command's flags that name held-out data (for the hint when there is none).
        trained_side: the image side the (already trained) tokenizer was trained at; None in train-tokenizer.
    """
    from nextscale import distributed
    from nextscale.data.images import ImageFolderDataset
    from nextscale.data.summary import file_sizes, resolution_line

    if not distributed.is_main():
        return
    log = distributed.get_logger("nextscale.data")
    for line in data_lines(train_set, held_out_set, role=role, held_out_flags=held_out_flags):
        log.info(line)
    images = next((d for d in (train_set, held_out_set) if isinstance(d, ImageFolderDataset)), None)
    sizes = file_sizes(images if images is not None else train_set)
    config = tokenizer_config
    log.info(
        resolution_line(
            config.image_size,
            config.in_channels,
            config.scale_sides,
            source,
            sizes,
            config.downsample_factor,
            training=role == "training",
            trained_side=trained_side,
        )
    )


def data_lines(
    train_set, held_out_set=None, role: str = "training", held_out_flags: str = "--eval-data or --eval-tokens"
) -> list[str]:
    """The ``data:``, ``files:`` and ``held-out:`` lines of the report (``nextscale.data.summary.describe_data``),
    with the held-out split an image folder or caption source carved (its ``split_note``)."""
    from nextscale.data.summary import describe_data

    note = next((d.split_note for d in (train_set, held_out_set) if getattr(d, "split_note", None)), None)
    return describe_data(train_set, held_out_set, note, role=role, held_out_flags=held_out_flags)


def data_summary(spec: str, image_size: int, channels: int) -> list[str]:
    """The lines of :func:`data_lines` for ``--data SPEC`` read at ``image_size`` px, as train-tokenizer builds
    its datasets (its bad-file check logs its own line; nothing is decoded): what ``nextscale info DATA`` shows.

    Args:
        spec: a data spec (``nextscale.training.data_specs``): an image folder, ``fashion-mnist[:DIR]`` or
            ``captions:PATH``.
        image_size: the side the images would be trained at (it decides which files are too small to use).
        channels: 1 or 3.
    """
    from nextscale.training.data_specs import build_datasets

    train_set, held_out_set = build_datasets(spec, image_size, channels)
    return data_lines(train_set, held_out_set, held_out_flags="")
