"""What a ``nextscale evaluate`` report says about the model it measured: where its weights came from (a pipeline
folder, or a training run's checkpoint: its step and EMA or raw weights), and for ``--loss`` which kind of model
it is and which tokens its loss is over.

A raster-scan model's loss is next-token cross-entropy over the tokens of one map that quantises the whole latent
at once; a next-scale model's last scale codes what its coarser scales left over. Both are reported under the
VAR paper's names (L_last, L_avg, ...), but they are losses over different codes of the same grid (on Fashion-MNIST's
test images 3.9 % of the raster tokens equal the next-scale last-scale token at the same position), so the report
names the kind and says so.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

PIPELINE_WEIGHTS = "as exported: EMA unless `nextscale export --raw`; a pipeline folder records no step"


def model_source(model: Path | str | None) -> dict:
    """The report's entries on where ``--model``'s weights come from (None: the bundled model).

    Read before the pipeline loads, from the checkpoint the loading takes (the newest readable one): its file,
    step, and ``weights`` "ema" (the run keeps an EMA, which loading prefers) or "raw".
    """
    from nextscale.cli.common import is_transformer_run

    if model is None or str(model).startswith("bundled:"):
        return {"model_source": "bundled pipeline folder", "weights": PIPELINE_WEIGHTS}
    if not is_transformer_run(model):
        return {"model_source": "exported pipeline folder", "weights": PIPELINE_WEIGHTS}
    return {"model_source": "training run", **newest_checkpoint_entries(Path(model))}


def newest_checkpoint_entries(run_dir: Path) -> dict:
    """``checkpoint``, ``checkpoint_step`` and ``weights`` of the newest checkpoint of ``run_dir`` that opens
    (memory-mapped: the tensors are not read); empty when none does, and loading then says why."""
    import torch

    from nextscale.training.checkpoint import CHECKPOINT_DIR, list_checkpoints

    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
            continue  # loading skips a bad newest file the same way
        if isinstance(state, dict) and "step" in state:
            return {
                "checkpoint": f"{CHECKPOINT_DIR}/{path.name}",
                "checkpoint_step": int(state["step"]),
                "weights": "raw" if state.get("ema") is None else "ema",
            }
    return {}


def loss_kind_entries(transformer) -> dict:
    """``--loss`` report entries beside ``HeldOutReport.model_kind``: ``token_schedule`` and ``warnings`` (for a
    raster model, that its loss is not comparable with a next-scale model's)."""
    from nextscale.transformer.raster_model import RasterTransformer

    schedule = transformer.config.schedule
    if isinstance(transformer, RasterTransformer):
        side = schedule.sides[-1]
        return {
            "token_schedule": f"one {side}x{side} map, {schedule.total_tokens} tokens in raster order",
            "warnings": [
                f"a raster model's L_last/L_avg is next-token loss over the tokens of one {side}x{side} map that "
                "quantises the whole latent; a next-scale model's last scale codes what its coarser scales left, "
                "other codes on the same grid: the two losses are not comparable (compare the models by "
                "FID/precision/recall of their samples)"
            ],
        }
    sides = ", ".join(str(side) for side in schedule.sides)
    return {
        "token_schedule": f"scales {sides}: {schedule.total_tokens} tokens, each scale after the coarser ones",
        "warnings": [],
    }
