"""What ``nextscale evaluate`` knows about the model it measures: before loading, what the pipeline folder's JSON
files say (``ModelFacts``, for the refusals that need no weights); after loading, where the weights came from, for
the report (``model_source``: a pipeline folder, with the training step and EMA or raw weights its export recorded,
or a training run's checkpoint as loaded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nextscale.tokenizer.config import TokenizerConfig

PIPELINE_WEIGHTS = "as exported: EMA unless `nextscale export --raw`; this pipeline folder records no step"
RASTER_CLASS = "RasterTransformer"  # the class name a raster pipeline's transformer/config.json records


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What a pipeline folder's JSON files say about the model, read without loading weights or a text encoder,
    so that every refusal that needs no model comes before the seconds that loading takes."""

    text: bool
    image_size: int
    channels: int
    tokenizer_config: TokenizerConfig  # its hash identifies the tokens it made
    has_text_encoder: bool
    raster: bool = False  # the raster-scan baseline (it samples, but cannot edit)

    @classmethod
    def of(cls, pipe) -> ModelFacts:
        """The same facts of a loaded pipeline."""
        text = pipe.is_text_conditional
        config = pipe.tokenizer.config
        encoder = getattr(pipe, "text_encoder", None) is not None
        raster = type(pipe.transformer).__name__ == RASTER_CLASS
        return cls(text, pipe.image_size, config.in_channels, config, encoder, raster)


def model_facts(model: Path | None) -> ModelFacts | None:
    """The facts of ``--model`` (default: the bundled class model), or None when its files cannot be read this
    way; loading the pipeline then says what is wrong with it."""
    from nextscale.pretrained import read_config, read_json_file, resolve_model_path
    from nextscale.sampling.pipeline_folder import PIPELINE_FILE
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    try:
        path = resolve_model_path(model if model is not None else "bundled:fashion-mnist")
        index = read_json_file(path / PIPELINE_FILE, "")
        config = read_config(MultiScaleVQVAE, path / index.get("tokenizer", "tokenizer"))
        transformer = read_json_file(path / index.get("transformer", "transformer") / "config.json", "")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    text, raster = transformer.get("class") == "TextScaleTransformer", transformer.get("class") == RASTER_CLASS
    encoder = index.get("text_encoder") is not None
    return ModelFacts(text, config.image_size, config.in_channels, config, encoder, raster)


def model_source(model: Path | str | None, pipe) -> dict:
    """The report's entries on where the loaded ``pipe``'s weights come from (``model`` None: the bundled model).

    A training run's are the checkpoint loading took (``load_run_pipeline`` records it on the pipeline: the newest
    one that passed verification, not merely the newest file): its file, step, and ``weights`` "ema" or "raw". A
    pipeline folder's are what its export recorded in ``transformer/export.json``; folders without one (exported
    before it existed, saved from Python, converted, bundled) say only how export chooses the weights. A run still
    training says so (``still_training``), and a line on stderr says so before the evaluation starts.
    """
    trained = pipe.trained_weights
    if trained is not None:
        return {"model_source": "training run", **trained.entries(), **live_run_entries(model, trained.step)}
    bundled = model is None or str(model).startswith("bundled:")
    recorded = exported_weights(model if model is not None else "bundled:fashion-mnist")
    entries = {"weights": PIPELINE_WEIGHTS} if recorded is None else recorded.entries()
    return {"model_source": "bundled pipeline folder" if bundled else "exported pipeline folder", **entries}


def live_run_entries(run_dir: Path | str, step: int) -> dict:
    """``still_training``: the line that says a run is training now, so that its checkpoint is an intermediate one
    (printed on stderr too); nothing for a run that is not training."""
    import sys

    from nextscale.training.run_lock import still_training_note

    note = still_training_note(run_dir, step)
    if note is None:
        return {}
    print(f"note: {note}", file=sys.stderr)
    return {"still_training": note}


def exported_weights(model: Path | str):
    """The ``export.json`` of a pipeline folder's transformer (``TrainedWeights``), or None when it has none."""
    from nextscale.pretrained import read_json_file, resolve_model_path
    from nextscale.sampling.pipeline_folder import PIPELINE_FILE
    from nextscale.training.export import read_export_record

    path = resolve_model_path(model)
    index = read_json_file(path / PIPELINE_FILE, "")  # read already by loading the pipeline
    return read_export_record(path / index.get("transformer", "transformer"))
