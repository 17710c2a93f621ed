"""A pipeline's folder: what ``pipeline.json`` may hold, loading a folder as the pipeline class it names, saving.

Folder layout (diffusers-like)::

    pipeline.json          {"_class_name": "Pipeline", "tokenizer": "tokenizer", "transformer": "transformer",
                            optional "recommended_sampling": {...} and "class_names": ["T-shirt/top", ...]}
    tokenizer/             config.json + model.safetensors
    transformer/           config.json + model.safetensors
    text_encoder/          text pipelines only (see ``text_pipeline.py``)

``_class_name`` selects the pipeline class (``Pipeline`` for class-conditional VAR models, ``TextPipeline``
for STAR), and each component's ``config.json`` names its class, so ``Pipeline.from_pretrained`` returns
the right kind. ``PipelineFolderMixin`` gives ``Pipeline`` its folder methods; every class that inherits it
registers itself under its name, which is how ``_class_name`` finds it.

References: diffusers ``DiffusionPipeline.from_pretrained`` / ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nextscale.pretrained import (
    BUNDLED_PREFIX,
    REPLACED_STAGING,
    atomic_write_text,
    load_component,
    read_json_file,
    remove_stale_staging,
    resolve_model_path,
    save_component,
    staging_folder,
    swap_entries,
    usable_device,
)
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline_speed import check_precision_name
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_model import TextScaleTransformer

if TYPE_CHECKING:
    from nextscale.sampling.pipeline import Pipeline

PIPELINE_FILE = "pipeline.json"
# What save_pretrained writes; pipeline.json first, the entry that makes the folder loadable (see swap_entries).
SAVED_ENTRIES = (PIPELINE_FILE, "tokenizer", "transformer")
# The staging folder, inside the target, that save_pretrained writes a pipeline into before swapping it in.
SAVING_STAGING = ".saving-*"
# Sampling settings a pipeline folder may recommend (pipeline.json "recommended_sampling"); the CLI uses them
# for flags the user leaves out, and Python users can pass ``**pipe.recommended_sampling``.
RECOMMENDABLE = ("cfg", "top_k", "top_p", "temperature", "masked_sampling")
# What pipeline.json may hold, and the JSON type of each entry.
PIPELINE_KEYS = {
    "_class_name": str,
    "tokenizer": str,
    "transformer": str,
    "text_encoder": (str, type(None)),
    "recommended_sampling": dict,
    "class_names": list,
}
COMPONENT_CLASSES = {
    cls.__name__: cls for cls in (MultiScaleVQVAE, ScaleTransformer, TextScaleTransformer, RasterTransformer)
}
# Pipeline classes by the name pipeline.json records; subclasses register themselves.
PIPELINE_CLASSES: dict[str, type[Pipeline]] = {}


def load_named_component(directory: Path, device: str | torch.device) -> torch.nn.Module:
    """Load a component folder whose config.json names its class."""
    payload = read_json_file(
        directory / "config.json", f"{directory} is not a component folder (expected config.json and model.safetensors)"
    )
    name = payload.get("class")
    if name not in COMPONENT_CLASSES:
        raise ValueError(f"{directory} holds an unknown component class {name!r}; known: {sorted(COMPONENT_CLASSES)}")
    return load_component(COMPONENT_CLASSES[name], directory, device)


# What a tokenizer and the transformer trained on its tokens must share, and what each value is to a user.
FOLDER_FIT = {
    "vocab_size": "the tokenizer's codebook size",
    "code_dim": "the width of the tokenizer's codes",
    "scale_sides": "the tokenizer's scale schedule",
}


def config_json_entry(config: object, name: str) -> str:
    """How ``name`` reads in the component's config.json (a raster model stores one map's ``side``, not sides)."""
    if isinstance(config, RasterConfig) and name == "scale_sides":
        return f"side {config.side} (one {config.side}x{config.side} map: scale_sides [{config.side}])"
    value = getattr(config, name)
    return f"{name} {json.dumps(list(value) if isinstance(value, tuple) else value)}"


def check_folder_fit(
    tokenizer_dir: Path, tokenizer: torch.nn.Module, transformer_dir: Path, transformer: torch.nn.Module
) -> None:
    """Refuse component folders whose codebook size, code width or scale schedule differ, naming both folders'
    ``config.json``, their values and the fix.

    The constructor's fit check (``sampler.check_components_fit``) names only "the tokenizer" and "the transformer",
    and inside ``pipeline_json_errors`` it would be reported as pipeline.json's fault; a folder's user needs to know
    which folder to replace. Swapped folders are left to the constructor, which says so.
    """
    if not isinstance(tokenizer, MultiScaleVQVAE) or isinstance(transformer, MultiScaleVQVAE):
        return
    tok, tra = tokenizer.config, transformer.config
    differ = [  # a raster model has no code_dim: it embeds token ids, not codes
        name for name in FOLDER_FIT if hasattr(tra, name) and getattr(tok, name) != getattr(tra, name)
    ]
    if not differ:
        return
    if differ == ["scale_sides"]:  # the tokenizer's weights do not depend on its schedule
        sides = tuple(tra.scale_sides)
        fix = (
            f"put the tokenizer the transformer was trained with in {tokenizer_dir}, or, if this is it on another "
            f"schedule, re-save it on the transformer's: save_component(load_tokenizer('{tokenizer_dir}', {sides}), "
            f"'{tokenizer_dir}') (nextscale.training.load_tokenizer, nextscale.pretrained.save_component)"
        )
    else:
        fix = (
            f"the transformer predicts the codes of the tokenizer it was trained with; put that tokenizer's folder in "
            f"{tokenizer_dir} (`nextscale export` writes both from one run; `nextscale convert` needs the --vae that "
            "matches --var)"
        )
    tokenizer_has = " and ".join(f"{config_json_entry(tok, name)} ({FOLDER_FIT[name]})" for name in differ)
    transformer_has = " and ".join(config_json_entry(tra, name) for name in differ)
    raise ValueError(
        f"{tokenizer_dir / 'config.json'} has {tokenizer_has} but {transformer_dir / 'config.json'} has "
        f"{transformer_has}: {fix}"
    )


def check_index(index: dict, path: Path) -> None:
    """Refuse a pipeline.json with unknown entries or entries of the wrong JSON type (one clear line)."""
    unknown = sorted(set(index) - set(PIPELINE_KEYS))
    if unknown:
        raise ValueError(f"{path} has unknown entries {unknown}; known: {sorted(PIPELINE_KEYS)}")
    for key, kind in PIPELINE_KEYS.items():
        if key in index and not isinstance(index[key], kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise TypeError(f"{path}: {key!r} must be a JSON {expected}, got {index[key]!r}")


def file_given_for_folder(path: Path) -> str:
    """The error for a file named where a pipeline folder goes: a `nextscale train` checkpoint
    (RUN/checkpoints/step-N.pt beside RUN/config.json, recognised by its place, not loaded) is sampled through its
    run or exported; anything else is taken for an official VAR/STAR checkpoint, which `convert` turns into a folder."""
    run = path.absolute().parent.parent
    step = re.fullmatch(r"step-(\d+)\.pt", path.name)  # training.checkpoint names them so (not imported: layering)
    if step and path.absolute().parent.name == "checkpoints" and (run / "config.json").is_file():
        shown = path.parent.parent if path.parent.name == "checkpoints" else run  # as the user wrote it, when possible
        export = f"`nextscale export --run {shown} --step {int(step.group(1))} --out DIR`"
        if _run_kind(run) == "tokenizer":
            return f"{path} is a tokenizer training checkpoint, not a pipeline folder; export it with {export}"
        return (
            f"{path} is a training checkpoint, not a pipeline folder: sample its run with `--model {shown}` (the "
            f"newest checkpoint), or export this step first with {export}"
        )
    return (
        f"{path} is a file, not a pipeline folder: convert official VAR/STAR checkpoints first (`nextscale "
        f"convert --vae VAE.pth --var {path.name} --out DIR`; a STAR text model: `--star {path.name} "
        "--text-encoder DIR`), or export a training run (`nextscale export --run RUN --out DIR`)"
    )


def _run_kind(run: Path) -> str | None:
    """The "kind" a run's config.json records ("tokenizer" / "transformer"); None when unreadable."""
    try:
        return json.loads((run / "config.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


@contextlib.contextmanager
def pipeline_json_errors(path: Path):
    """Name the pipeline.json whose class names or recommended settings are refused."""
    try:
        yield
    except (ValueError, TypeError) as err:
        if type(err) not in (ValueError, TypeError):
            raise
        raise type(err)(f"{path / PIPELINE_FILE}: {err}") from err


class PipelineFolderMixin:
    """``from_pretrained``, ``from_components``, ``recommend``, ``index`` and ``save_pretrained`` of ``Pipeline``
    (which provides the constructor, ``tokenizer``, ``transformer`` and the speed switches they use)."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        PIPELINE_CLASSES[cls.__name__] = cls

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        cuda_graphs: bool = False,
        fused_kernels: bool = False,
    ) -> Pipeline:
        """Load a pipeline folder (local paths only; nothing is downloaded); returns the kind it records.

        ``path`` may also name a model shipped with the package: ``"bundled:fashion-mnist"`` (class-conditional)
        or ``"bundled:scenes"`` (text-to-image). A folder's recommended sampling settings (pipeline.json
        "recommended_sampling"; the bundled scene model's are cfg 3 and top_k 10) become ``pipe.recommended_sampling``:
        the CLI samples with them, a Python call only when given them, ``pipe(..., **pipe.recommended_sampling)``
        (the call's own defaults, cfg 1.5 and no top-k, are the official VAR sampler's, not the settings the scene
        model's card measures). ``dtype`` is the sampling precision: "fp32" (exact), "bf16",
        "fp16", "int8" or "auto" (the fastest this device supports; see ``nextscale.sampling.precision``).
        ``cuda_graphs`` replays each scale's transformer step as a CUDA graph (see :meth:`use_cuda_graphs`);
        ``fused_kernels`` runs the blocks' elementwise regions as fused compiled kernels (:meth:`use_fused_kernels`).
        """
        check_precision_name(dtype)  # before loading anything
        device = usable_device(device)
        shown = os.fspath(path)  # as the user wrote it: "bundled:scenes", not the package folder it stands for
        path = resolve_model_path(path)
        if path.is_file():  # a training checkpoint, an official .pth, or a file of weights, given where a folder goes
            raise ValueError(file_given_for_folder(path))
        index = read_json_file(
            path / PIPELINE_FILE,
            f"{path} is not a pipeline folder (expected {PIPELINE_FILE}, tokenizer/ and transformer/; "
            "see `nextscale convert` and `nextscale export`)",
        )
        check_index(index, path / PIPELINE_FILE)
        from nextscale.sampling import raster_pipeline, text_pipeline  # noqa: F401  (register their classes)

        name = index.get("_class_name", "Pipeline")
        if name not in PIPELINE_CLASSES:
            raise ValueError(f"{path / PIPELINE_FILE} names an unknown pipeline class {name!r}")
        pipeline_cls = PIPELINE_CLASSES[name]
        if not issubclass(pipeline_cls, cls):
            raise ValueError(f"{shown} holds a {name}, not a {cls.__name__}; load it with Pipeline.from_pretrained")
        pipeline = pipeline_cls.from_components(path, index, device).use_precision(dtype)
        pipeline = pipeline.use_cuda_graphs() if cuda_graphs else pipeline
        return pipeline.use_fused_kernels(fused_kernels)

    @classmethod
    def from_components(cls, path: Path, index: dict, device: str | torch.device) -> Pipeline:
        """Build the pipeline from the component folders that ``index`` (pipeline.json) names."""
        tokenizer_dir = path / index.get("tokenizer", "tokenizer")
        transformer_dir = path / index.get("transformer", "transformer")
        tokenizer = load_named_component(tokenizer_dir, device)
        transformer = load_named_component(transformer_dir, device)
        check_folder_fit(tokenizer_dir, tokenizer, transformer_dir, transformer)
        with pipeline_json_errors(path):
            pipe = cls(tokenizer, transformer, class_names=index.get("class_names"))
            return pipe.recommend(**index.get("recommended_sampling", {}))

    def recommend(self, **settings) -> Pipeline:
        """Record the sampling settings this model is meant to be used with (saved in pipeline.json)."""
        unknown = sorted(set(settings) - set(RECOMMENDABLE))
        if unknown:
            raise ValueError(f"recommended_sampling has unknown settings {unknown}; known: {list(RECOMMENDABLE)}")
        SamplingConfig(**settings)  # validates the values
        self.recommended_sampling = dict(settings)
        return self

    def index(self) -> dict:
        """What pipeline.json records."""
        index = {"_class_name": type(self).__name__, "tokenizer": "tokenizer", "transformer": "transformer"}
        if getattr(self, "recommended_sampling", None):
            index["recommended_sampling"] = dict(self.recommended_sampling)
        if getattr(self, "class_names", None):
            index["class_names"] = list(self.class_names)
        return index

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write the pipeline folder (created if needed; the pipeline of an existing one is replaced).

        Over an existing pipeline the new files are written into a staging folder inside ``path`` first, then
        moved in: a save interrupted while writing (a crash, a kill, a full disk) leaves the old pipeline whole,
        never a folder that loads the new tokenizer with the old transformer. The staging folders that a killed save
        left (``.saving-*``, ``.replaced-*``) are removed by the next save into ``path``, with one logged line.

        Args:
            path: a local folder.
            dtype: storage dtype of the weights, e.g. ``torch.float16`` to halve the size (they load back as
                float32); None keeps float32.
        """
        path = self.check_save_target(path, dtype)
        self.save_entries(path, SAVED_ENTRIES, lambda folder: self.write_entries(folder, dtype))

    @staticmethod
    def save_entries(path: Path, entries: Sequence[str], write: Callable[[Path], None]) -> None:
        """``write(folder)`` the pipeline's ``entries`` (``pipeline.json`` first) into ``path``: directly into a new
        folder, or into a staging folder swapped in over an existing pipeline (see :meth:`save_pretrained`)."""
        remove_stale_staging(path, [SAVING_STAGING, REPLACED_STAGING])
        if not any((path / name).exists() or (path / name).is_symlink() for name in entries):
            write(path)
            return
        with staging_folder(path, SAVING_STAGING) as staging:
            write(staging)
            swap_entries(staging, path, entries)

    def write_entries(self, folder: Path, dtype: torch.dtype | None) -> None:
        """Write the components and pipeline.json into ``folder`` (pipeline.json last)."""
        save_component(self.tokenizer, folder / "tokenizer", dtype=dtype)
        save_component(self.transformer, folder / "transformer", dtype=dtype)
        atomic_write_text(folder / PIPELINE_FILE, json.dumps(self.index(), indent=2) + "\n")

    def check_save_target(self, path: str | Path, dtype: torch.dtype | None) -> Path:
        """Refuse, before writing anything, what would make a broken or surprising folder."""
        if isinstance(path, str) and path.startswith(BUNDLED_PREFIX):
            raise ValueError(f"{path!r} names a model shipped with the package; save to a folder path instead")
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file; save_pretrained writes a folder, give a folder path")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype such as torch.float16 (or None), got {dtype!r}")
        if self.precision.name != "fp32":
            raise ValueError(
                f"this pipeline samples in {self.precision.name}: its transformer's linear weights were cast or "
                "quantised, so saving it would not store the model's float32 weights; save a float32 pipeline "
                "(Pipeline.from_pretrained(folder).save_pretrained(path), with dtype=torch.float16 to halve the size)"
            )
        return path
