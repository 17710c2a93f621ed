"""From training runs to pretrained folders, and loading a tokenizer from wherever it lives.

``export_run`` writes a run's EMA (or raw) weights: a tokenizer run becomes one component folder
(config.json + model.safetensors); a transformer run becomes a pipeline folder::

    out/pipeline.json   {"_class_name": "Pipeline", "tokenizer": "tokenizer", "transformer": "transformer"}
    out/tokenizer/      the frozen tokenizer the run trained with (copied into the run at its start)
    out/transformer/    the trained transformer
    out/text_encoder/   text runs: the reference to the frozen text encoder the run used

Beside the exported weights (``out/transformer/`` of a pipeline, ``out/`` of a tokenizer) ``export.json`` records
which weights they are: the checkpoint file, its training step and "ema" or "raw" (:class:`TrainedWeights`). It
lives in the component folder so that it travels with the weights it describes (a later ``save_pretrained`` replaces
that folder whole); folders exported before it existed have none and load as before.

References: DiT ``download.py`` (``find_model``: EMA weights from a training checkpoint), diffusers folder layout.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nextscale.pretrained import (
    CONFIG_NAME,
    atomic_write_text,
    config_from_dict,
    load_component,
    read_json_file,
    resolve_model_path,
    save_component,
)
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.raster_pipeline import RasterPipeline
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.scales import SIDES_256
from nextscale.text.reference import REFERENCE_NAME, load_text_encoder_folder
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.official import load_official_vqvae
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.transformer_trainer import TEXT_ENCODER_DIR, TOKENIZER_DIR
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

PIPELINE_FILE = "pipeline.json"
EXPORT_RECORD = "export.json"  # beside exported weights: the checkpoint, step and EMA/raw choice they come from
_RUN_MODELS = {"tokenizer": (MultiScaleVQVAE, TokenizerConfig), "transformer": (ScaleTransformer, TransformerConfig)}
_TRANSFORMERS = {
    ScaleTransformer.__name__: (ScaleTransformer, TransformerConfig),
    TextScaleTransformer.__name__: (TextScaleTransformer, TextTransformerConfig),
    RasterTransformer.__name__: (RasterTransformer, RasterConfig),
}


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG_NAME
    run_config = read_json_file(path, f"{run_dir} is not a training run directory")
    kind = run_config.get("kind")
    if kind not in _RUN_MODELS:
        raise ValueError(f"{path} is not a nextscale training run (kind {kind!r})")
    return run_config


def run_kind(folder: str | os.PathLike) -> str | None:
    """ "tokenizer" or "transformer" when ``folder`` is a training run directory, else None (never raises)."""
    try:
        return read_run_config(folder)["kind"] if (Path(folder) / CONFIG_NAME).is_file() else None
    except (OSError, ValueError):
        return None


def check_not_run_checkpoint(flag: str, value: str | os.PathLike | None) -> None:
    """Refuse ``value`` when it is a checkpoint file of a training run (RUN/checkpoints/step-N.pt) given where a
    model is read, naming the run folder to pass instead. ``flag`` is the command-line flag ``value`` came with
    ("--tokenizer"), named in the message; "" for a path given in Python.

    Without this check the file is read as an official VAR checkpoint and refused for its extra keys."""
    if not value:
        return
    path = Path(value)
    run = path.parent.parent
    if not path.is_file() or path.parent.name != ckpt.CHECKPOINT_DIR or run_kind(run) is None:
        return
    try:
        step = ckpt.checkpoint_step(path)
    except ValueError:  # another file in checkpoints/: not a checkpoint this check knows
        return
    given = f"{flag} " if flag else ""
    raise ValueError(
        f"{given}{value} is a checkpoint of the training run {run}: pass the run folder ({given}{run}, its newest "
        f"checkpoint), or export this step first (`nextscale export --run {run} --step {step} --out DIR`) and pass "
        f"{given}DIR"
    )


@dataclasses.dataclass(frozen=True)
class TrainedWeights:
    """Which weights of a training run a model holds, as loaded: what evaluation reports and export records.

    ``checkpoint`` is the file's name under the run ("checkpoints/step-00001234.pt"), ``step`` the step its state
    records, ``weights`` "ema" or "raw" (a run without an EMA gives its raw weights even when EMA was asked for).
    """

    checkpoint: str
    step: int
    weights: str

    def entries(self) -> dict[str, Any]:
        """The report and ``export.json`` entries: checkpoint, checkpoint_step, weights."""
        return {"checkpoint": self.checkpoint, "checkpoint_step": self.step, "weights": self.weights}


def load_run_model(
    run_dir: str | os.PathLike, raw: bool = False, checkpoint: str | os.PathLike | None = None
) -> nn.Module:
    """The trained model of a run: EMA weights, or raw with ``raw=True``, from ``checkpoint`` (one of the run's
    checkpoint files) or else the newest readable one."""
    return load_run_weights(run_dir, raw, checkpoint)[0]


def load_run_weights(
    run_dir: str | os.PathLike, raw: bool = False, checkpoint: str | os.PathLike | None = None
) -> tuple[nn.Module, TrainedWeights]:
    """:func:`load_run_model` and which weights it loaded. Named from the loaded state itself, never from a look at
    the run before loading: a newest checkpoint that fails verification is skipped for an older one, and a run
    still training may save a newer one meanwhile."""
    model = build_run_model(read_run_config(run_dir))
    if checkpoint is not None:
        state, path = ckpt.load_checkpoint(checkpoint), Path(checkpoint)
    else:
        found = ckpt.load_latest(run_dir)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint yet; train first")
        state, path = found
    use_raw = raw or state.get("ema") is None
    model.load_state_dict(state["models"]["model"] if use_raw else state["ema"]["module"], strict=True)
    loaded = TrainedWeights(f"{ckpt.CHECKPOINT_DIR}/{path.name}", int(state["step"]), "raw" if use_raw else "ema")
    return model.eval(), loaded


def write_export_record(folder: Path, loaded: TrainedWeights) -> None:
    """``folder/export.json``: which checkpoint, step and weights the component folder's weights are."""
    atomic_write_text(folder / EXPORT_RECORD, json.dumps(loaded.entries(), indent=2) + "\n")


def read_export_record(folder: str | os.PathLike) -> TrainedWeights | None:
    """The ``export.json`` of an exported component folder; None when it has none (exported before it existed,
    saved by ``save_pretrained`` or converted). Raises a one-line ValueError for an unreadable one."""
    path = Path(folder) / EXPORT_RECORD
    if not path.is_file():
        return None
    record = read_json_file(path, f"{path} is not an export record")
    try:
        loaded = TrainedWeights(str(record["checkpoint"]), int(record["checkpoint_step"]), str(record["weights"]))
    except (KeyError, TypeError, ValueError):
        loaded = None
    if loaded is None or loaded.weights not in ("ema", "raw"):
        raise ValueError(
            f'{path} is not an export record (it needs checkpoint, checkpoint_step and weights "ema" or "raw"); '
            "delete it or export the run again"
        )
    return loaded


def build_run_model(run_config: dict[str, Any]) -> nn.Module:
    """The model a run's config.json describes, freshly initialised (its trained weights are in the checkpoints)."""
    kind = run_config["kind"]
    model_cls, config_cls = _RUN_MODELS[kind]
    if kind == "transformer":
        model_cls, config_cls = _TRANSFORMERS[run_config.get("model_class", ScaleTransformer.__name__)]
    return model_cls(config_from_dict(config_cls, run_config[kind]))


def load_tokenizer(source: str | os.PathLike, scale_sides: tuple[int, ...] | None = None) -> MultiScaleVQVAE:
    """A tokenizer from a component folder, a pipeline folder, a training run (tokenizer or transformer run:
    EMA weights / the run's tokenizer copy) or an official ``vae_ch160v4096z32.pth`` file.

    Args:
        source: the path.
        scale_sides: scale schedule to use (an official .pth file defaults to the 256 px one; others keep
            their own). The weights do not depend on the schedule, so a tokenizer trained at one resolution
            serves any multiple of its stride (e.g. the 32 px Fashion-MNIST tokenizer on 64 px scenes).
    """
    check_not_run_checkpoint("", source)
    path = resolve_model_path(source)
    if path.is_file():
        return load_official_vqvae(path, scale_sides or SIDES_256)
    tokenizer = _load_tokenizer_folder(path)
    if scale_sides is None or tuple(scale_sides) == tuple(tokenizer.config.scale_sides):
        return tokenizer
    return with_scale_sides(tokenizer, tuple(scale_sides))


def with_scale_sides(tokenizer: MultiScaleVQVAE, scale_sides: tuple[int, ...]) -> MultiScaleVQVAE:
    """The same tokenizer weights on another scale schedule (per-scale code-usage statistics start afresh).

    A tokenizer with one Phi per scale (``num_phi=0``) has as many Phis as scales; on a schedule of another length
    each new scale takes the trained Phi of the old scale nearest its position t = k / (K - 1) (a one-scale
    schedule is the finest map, t = 1), as shared Phis (``num_phi >= 1``) are picked by position anyway.
    Worked example: (1, 2, 4) -> (4,) takes the Phi of scale 2; (1, 2, 4) -> (1, 2, 3, 4) takes Phis 0, 1, 1, 2.
    """
    config = dataclasses.replace(tokenizer.config, scale_sides=tuple(scale_sides))
    rescheduled = MultiScaleVQVAE(config)
    own = rescheduled.state_dict()
    state = {
        key: value for key, value in tokenizer.state_dict().items() if key in own and own[key].shape == value.shape
    }
    if config.num_phi == 0 and len(config.scale_sides) != len(tokenizer.config.scale_sides):
        state = {key: value for key, value in state.items() if not key.startswith("quantizer.phis.")}
        old_count, new_count = len(tokenizer.config.scale_sides), len(config.scale_sides)
        for new_idx in range(new_count):
            position = new_idx / (new_count - 1) if new_count > 1 else 1.0
            old_idx = round(position * (old_count - 1))
            for key, value in tokenizer.quantizer.phis[old_idx].state_dict().items():
                state[f"quantizer.phis.{rescheduled.quantizer.phi_index[new_idx]}.{key}"] = value
    rescheduled.load_state_dict({**own, **state}, strict=True)
    return rescheduled.eval()


def _load_tokenizer_folder(path: Path) -> MultiScaleVQVAE:
    if not path.is_dir():
        raise FileNotFoundError(
            f"tokenizer {path} not found (expected a component folder, a pipeline folder, a "
            "training run directory or an official .pth file)"
        )
    if (path / PIPELINE_FILE).is_file():
        index = json.loads((path / PIPELINE_FILE).read_text())
        return load_component(MultiScaleVQVAE, path / index.get("tokenizer", "tokenizer"))
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: {path} is not a tokenizer folder or training run")
    payload = json.loads(config_path.read_text())
    if payload.get("class") == MultiScaleVQVAE.__name__:
        return load_component(MultiScaleVQVAE, path)
    if payload.get("kind") == "tokenizer":
        return load_run_model(path)
    if payload.get("kind") == "transformer":
        return load_component(MultiScaleVQVAE, path / TOKENIZER_DIR)
    raise ValueError(f"{path} holds neither a tokenizer nor a training run ({config_path})")


def check_export_out(run_dir: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse an export target that would damage the run or another run, or shadow a pipeline (nothing written)."""
    run_config = read_run_config(run_dir)
    out = Path(out)
    own = {Path(run_dir).resolve() / name for name in ("", ckpt.CHECKPOINT_DIR, TOKENIZER_DIR, TEXT_ENCODER_DIR)}
    if out.resolve() in own:
        # the run's own config.json, checkpoints or tokenizer copy would be overwritten: it could not resume or
        # export again
        raise ValueError(f"--out {out} is the run {run_dir} or one of its folders; export elsewhere, e.g. models/NAME")
    if run_kind(out) is not None:
        raise ValueError(f"--out {out} is a training run directory; export to another folder, e.g. models/NAME")
    # another run's checkpoints or tokenizer copy: that run would export and sample the weights written there
    for parent in out.resolve().parents:
        for name in (ckpt.CHECKPOINT_DIR, TOKENIZER_DIR, TEXT_ENCODER_DIR):
            if out.resolve().is_relative_to(parent / name) and run_kind(parent) is not None:
                raise ValueError(f"--out {out} is in the {name}/ folder of the run {parent}; export elsewhere")
    if run_config["kind"] == "tokenizer" and (out / PIPELINE_FILE).is_file():
        # a component folder with a stale pipeline.json beside it would load as that pipeline's tokenizer
        raise ValueError(f"--out {out} holds a pipeline ({PIPELINE_FILE}); export the tokenizer to another folder")
    if run_config["kind"] == "transformer":
        # A pipeline export replaces out/tokenizer, out/transformer and out/text_encoder whole: in the layout of
        # `demo --train` (runs/demo/tokenizer, runs/demo/transformer) an export to runs/demo would delete both runs.
        run = Path(run_dir).resolve()
        for name in ("tokenizer", "transformer", TEXT_ENCODER_DIR):
            entry = out / name
            if run_kind(entry) is not None or run.is_relative_to(entry.resolve()):
                raise ValueError(
                    f"--out {out} holds the training run {entry}, which the pipeline's {name}/ folder would "
                    "replace; export elsewhere, e.g. models/NAME"
                )


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    raw: bool = False,
    recommended: dict | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> Path:
    """Write a run's EMA (or raw) weights as a component folder (tokenizer run) or pipeline folder (transformer run).

    Written in place, file by file; ``nextscale export`` writes a pipeline into a staging folder and swaps it in, so
    that an export over an older pipeline leaves none of its components (an old ``text_encoder/``) behind.
    ``recommended``: sampling settings the pipeline records for the flags a user leaves out (``Pipeline.recommend``;
    over those a masked-sampler-head run recommends itself). ``checkpoint``: one of the run's checkpoint files
    (an earlier step's), instead of the newest readable one."""
    check_export_out(run_dir, out)
    run_config = read_run_config(run_dir)
    out = Path(out)
    model, loaded = load_run_weights(run_dir, raw, checkpoint)
    if run_config["kind"] == "tokenizer":
        (out / EXPORT_RECORD).unlink(missing_ok=True)  # written in place: never an old record beside new weights
        save_component(model, out)
        write_export_record(out, loaded)
        return out
    tokenizer = load_component(MultiScaleVQVAE, Path(run_dir) / TOKENIZER_DIR)
    save_component(tokenizer, out / "tokenizer")
    save_component(model, out / "transformer")
    write_export_record(out / "transformer", loaded)
    pipeline_class = "RasterPipeline" if isinstance(model, RasterTransformer) else "Pipeline"
    index = {"_class_name": pipeline_class, "tokenizer": "tokenizer", "transformer": "transformer"}
    if run_config.get("class_names") and not isinstance(model, TextScaleTransformer):
        index["class_names"] = list(run_config["class_names"])
    if isinstance(model, TextScaleTransformer):
        source = Path(run_dir) / TEXT_ENCODER_DIR
        reference = source / REFERENCE_NAME
        if not reference.is_file():
            raise FileNotFoundError(f"{reference} not found: the text run lost its text-encoder reference")
        (out / TEXT_ENCODER_DIR).mkdir(parents=True, exist_ok=True)
        # An encoder that sat in another pipeline's text_encoder/ was copied into the run (recorded as "path": "."):
        # its files travel with the reference, which names them relative to the folder.
        for entry in sorted(source.iterdir()):
            if entry.name == REFERENCE_NAME or entry.name.startswith("."):  # hidden: temporary files of atomic writes
                continue
            if entry.is_dir():
                shutil.copytree(entry, out / TEXT_ENCODER_DIR / entry.name, dirs_exist_ok=True)
            else:
                shutil.copy2(entry, out / TEXT_ENCODER_DIR / entry.name)
        atomic_write_text(out / TEXT_ENCODER_DIR / REFERENCE_NAME, reference.read_text())
        index = {**index, "_class_name": "TextPipeline", "text_encoder": TEXT_ENCODER_DIR}
    settings = sampler_head_sampling(run_config) if trained_sampler_head(run_config) else {}
    settings = {**settings, **(recommended or {})}
    if settings:
        index["recommended_sampling"] = settings
    atomic_write_text(out / PIPELINE_FILE, json.dumps(index, indent=2) + "\n")
    return out


def trained_sampler_head(run_config: dict) -> bool:
    """Whether the run trained a masked-sampler head (its pipeline then recommends masked sampling)."""
    return bool(run_config.get("objective", {}).get("train_sampler_head", False))


def sampler_head_sampling(run_config: dict) -> dict:
    """What a masked-sampler-head run's pipeline recommends: its starting model's settings, with masked sampling."""
    return {**run_config.get("init_sampling", {}), "masked_sampling": True}


def with_preview_cfg(run_config: dict, recommended: dict | None) -> tuple[dict | None, str]:
    """``--recommend`` plus, when it leaves cfg out, the cfg the run drew its previews with when it chose one (a
    --preview-cfg other than the default): the strength the user watched during training becomes the model's cfg
    for `sample`, `edit` and `evaluate` alike. At the default the commands keep their own defaults (`sample` 1.5,
    `edit` 3). Returns (settings, a note for the export line).

    A masked-sampler-head run is left as it is: its export keeps its starting model's recommendation."""
    from nextscale.training.config import TransformerObjective

    objective = run_config.get("objective") or {}
    preview_cfg = objective.get("preview_cfg")
    chosen = preview_cfg is not None and preview_cfg != TransformerObjective.preview_cfg
    if not chosen or objective.get("train_sampler_head") or "cfg" in (recommended or {}):
        return recommended, ""
    note = f"; it recommends cfg {preview_cfg:g}, its previews' (--recommend cfg=VALUE for another)"
    return {"cfg": float(preview_cfg), **(recommended or {})}, note


def load_run_pipeline(
    run_dir: str | os.PathLike,
    raw: bool = False,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
):
    """A transformer run as a pipeline, without exporting it: the run's tokenizer copy and its trained weights (EMA,
    or raw with ``raw=True``; from ``checkpoint`` or the newest readable one), of the kind :func:`export_run` writes
    (``Pipeline``, ``RasterPipeline`` or ``TextPipeline``). Its ``trained_weights`` attribute says which checkpoint,
    step and weights were loaded (:class:`TrainedWeights`), for reports."""
    run_config = read_run_config(run_dir)
    if run_config["kind"] != "transformer":
        raise ValueError(f"{run_dir} is a tokenizer run; images come from a transformer run (`nextscale train`)")
    model, loaded = load_run_weights(run_dir, raw, checkpoint)
    tokenizer = load_component(MultiScaleVQVAE, Path(run_dir) / TOKENIZER_DIR)
    text = isinstance(model, TextScaleTransformer)
    if text:
        text_encoder = load_text_encoder_folder(Path(run_dir) / TEXT_ENCODER_DIR, device=device)
        pipe = TextPipeline(tokenizer, model, text_encoder).to(device)
    else:
        pipeline_cls = RasterPipeline if isinstance(model, RasterTransformer) else Pipeline
        pipe = pipeline_cls(tokenizer, model, run_config.get("class_names") or None).to(device)
    pipe.trained_weights = loaded
    if text and trained_sampler_head(run_config):
        return pipe.recommend(**sampler_head_sampling(run_config))
    recommended, _ = with_preview_cfg(run_config, None)  # as its export would: the cfg its previews used
    return pipe if recommended is None else pipe.recommend(**recommended)


def load_transformer_weights(source: str | os.PathLike) -> nn.Module:
    """A trained transformer to start from (``--init-from``): a transformer run (EMA weights), a pipeline folder
    or a transformer component folder (or a bundled model: ``bundled:fashion-mnist``)."""
    check_not_run_checkpoint("", source)
    path = resolve_model_path(source)
    if (path / PIPELINE_FILE).is_file():
        index = json.loads((path / PIPELINE_FILE).read_text())
        path = path / index.get("transformer", "transformer")
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{source} is not a transformer run, pipeline folder or transformer folder")
    payload = json.loads(config_path.read_text())
    if payload.get("kind") == "transformer":
        return load_run_model(path)
    if payload.get("class") in _TRANSFORMERS:
        return load_component(_TRANSFORMERS[payload["class"]][0], path)
    raise ValueError(f"{source} holds no transformer ({config_path})")
