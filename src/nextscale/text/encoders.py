"""Frozen text encoders: a Hugging Face model and its tokenizer, loaded from local folders.

Three kinds, one small class each, all returning a ``TextEncoding`` (hidden, mask, pooled) in float32:

- ``CLIPTextEncoder``: the CLIP text tower, as official STAR uses it (Stable Diffusion 2.1's
  ``text_encoder``, width 1024): padding to ``max_length`` (77), hidden = ``last_hidden_state``,
  pooled = ``pooler_output``, the final hidden state at the EOS token (no projection).
- ``T5TextEncoder``: a T5 encoder, padding to ``max_length``; pooled = the mean over real tokens.
  Official STAR's T5 ablation (Flan-T5-XL, 120 tokens) averages over *all* positions, padding
  included: ``pooling="mean_all"`` with ``max_length=120`` reproduces it.
- ``SentenceTextEncoder``: a BERT-style sentence-transformers folder (all-MiniLM-L6-v2, the small
  default). ``max_length`` comes from ``sentence_bert_config.json`` and the pooling mode from the
  Pooling module's ``config.json``. Batches are padded to their longest prompt (no fixed length:
  attention cost grows with T, and the mask marks the padding). sentence-transformers'
  ``Normalize`` module is not applied: ``pooled`` is the raw pooled vector, not unit length.

Encoders never train: weights are frozen, the model is in eval mode and ``encode`` runs under
``torch.no_grad`` (not ``inference_mode``: its tensors could not enter a trained model's autograd).
``transformers`` is imported only when a folder is loaded, so ``import nextscale.text`` stays light.

References: STAR (Ma et al. 2025) ``models/text_encoder.py`` and ``models/t5_embedder.py``;
sentence-transformers ``models/Transformer.py`` and ``models/Pooling.py``; Hugging Face
``CLIPTextModel`` (``pooler_output``) and ``T5EncoderModel``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors import SafetensorError

from nextscale.pretrained import read_json_file
from nextscale.text.encoding import TextEncoding
from nextscale.text.pooling import POOLINGS

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# Tokenizers without a configured limit report model_max_length = int(1e30); anything this big means "unset".
UNSET_MODEL_MAX_LENGTH = 1_000_000
SHOWN_PROMPT_CHARACTERS = 60  # of the longest over-long prompt, named in the truncation warning


@contextlib.contextmanager
def quiet_weight_loading(transformers: ModuleType):
    """No "Loading weights" progress bar while a local encoder of a few MB loads in a second (it would be the
    only such bar in a command's output), and no load report table of the keys it found: ``from_folder`` checks
    missing and mismatched weights itself and says in one line what is wrong, and unexpected ones are expected (a
    full CLIP's vision tower, a BERT checkpoint's MLM head). The library's settings are restored afterwards."""
    was_on = transformers.utils.logging.is_progress_bar_enabled()
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        if was_on:
            transformers.utils.logging.enable_progress_bar()


def import_transformers() -> ModuleType:
    """Import ``transformers`` or say which extra provides it."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(
            "text encoders need the Hugging Face `transformers` package; install the text extra: "
            "pip install 'nextscale[text]'"
        ) from err
    return transformers


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """A non-empty list of strings; a bare string is refused (it would be read character by character)."""
    if isinstance(prompts, str):
        raise TypeError(f"encode takes a list of prompts; wrap a single prompt as [{prompts!r}]")
    if isinstance(prompts, (bytes, bytearray, set, frozenset, dict)) or not isinstance(prompts, Iterable):
        # bytes would be read as numbers, a set in no fixed order
        raise TypeError(f"encode takes a list of prompts (strings), got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("encode needs at least one prompt (the null prompt is the empty string '')")
    wrong = sorted({type(prompt).__name__ for prompt in prompts if not isinstance(prompt, str)})
    if wrong:
        raise TypeError(f"prompts must be strings, got {', '.join(wrong)}")
    return prompts


class TextEncoder(ABC):
    """A frozen Hugging Face encoder and its tokenizer; subclasses choose the model class, padding and pooling.

    Args:
        model: the Hugging Face model; it is frozen, put in eval mode, cast to float32 and moved to ``device``.
        tokenizer: its tokenizer.
        path: the model folder it was loaded from (recorded by pipeline references).
        tokenizer_path: the tokenizer folder, when not ``path``.
        pooling: one of ``poolings``; ``None`` means the kind's default.
        max_length: token limit per prompt (special tokens included); ``None`` reads it from the tokenizer
            (``model_max_length``), capped by the model's ``max_position_embeddings``.
        device: where the model runs and where encodings are returned.
    """

    kind: ClassVar[str]
    poolings: ClassVar[tuple[str, ...]]
    padding: ClassVar[str]  # "max_length" (every batch has T = max_length) or "longest"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        path: str | os.PathLike,
        tokenizer_path: str | os.PathLike | None = None,
        pooling: str | None = None,
        max_length: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.path = Path(path)
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else self.path
        self.name = self.path.name
        pooling = self.poolings[0] if pooling is None else pooling
        if pooling not in self.poolings:
            raise ValueError(f"{self.kind} text encoders pool with one of {list(self.poolings)}, got {pooling!r}")
        self.pooling = pooling
        # Real tokens first, whatever the folder's tokenizer_config.json says: a left-padded batch would shift BERT's
        # absolute positions, make CLIP pool the first padding token (padding repeats EOS) and break the prefix masks
        # the caption cache trims rows by; truncation keeps a prompt's start, as the official encoders do.
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "right"
        self.tokenizer = tokenizer
        self.model = model.float().eval().requires_grad_(False)
        self.max_length = self._resolve_max_length(max_length)
        self.device = torch.device("cpu")
        self.warned_truncation = False  # the truncation warning is given once (training meets it every step)
        self.to(device)

    @classmethod
    @abstractmethod
    def model_class(cls, transformers: ModuleType) -> type:
        """The ``transformers`` class that loads this kind's weights (each kind names its own)."""

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        tokenizer_path: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        device: str | torch.device = "cpu",
    ) -> TextEncoder:
        """Load model and tokenizer from local folders; nothing is ever downloaded (``local_files_only``).

        ``None`` options are first offered to :meth:`folder_options` (a kind may read them from the folder).
        """
        pooling, max_length = cls.folder_options(Path(path), pooling, max_length)
        transformers = import_transformers()
        tokenizer_path = path if tokenizer_path is None else tokenizer_path
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
        except ImportError:
            raise  # a missing optional package names itself
        except Exception as err:  # damaged files raise whatever their parser meets: JSONDecodeError, KeyError, ...
            reason = " ".join(f"{type(err).__name__}: {err}".split())  # one line; keeps a hint like "install X"
            config_path = Path(tokenizer_path) / "tokenizer_config.json"
            if not config_path.is_file():  # vocab.json + merges.txt alone do not say which tokenizer they are
                raise ValueError(
                    f"tokenizer_config.json is missing from {tokenizer_path}, so its tokenizer class and special "
                    f"tokens are unknown ({reason}); copy it from where the other tokenizer files came from (the "
                    "model's tokenizer/ folder, e.g. Stable Diffusion 2.1's tokenizer/tokenizer_config.json)"
                ) from err
            raise ValueError(
                f"the tokenizer in {tokenizer_path} could not be loaded ({reason}); check that its files are complete "
                "and undamaged, or copy them again"
            ) from err
        with quiet_weight_loading(transformers):
            try:
                # Weights whose shapes differ from config.json are reported below (transformers would raise a
                # RuntimeError pointing at a report table), in one line.
                model, loading = cls.model_class(transformers).from_pretrained(
                    str(path), local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True
                )
            # A cut-off file: SafetensorError (no OSError: the CLI would show a traceback), or a bare OSError for a
            # pytorch_model.bin ("[Errno 22] Invalid argument", naming no file).
            except (SafetensorError, OSError) as err:
                raise ValueError(
                    f"the weights in {path} could not be read ({err}): the file is damaged or was not fully "
                    "downloaded; copy or download it again"
                ) from err
        # transformers initialises weights the folder lacks at random (with a report on stderr, no error): a folder
        # of another model type, or incomplete weights, would give a random encoder. The pooler is never used.
        missing = sorted(key for key in loading.get("missing_keys", ()) if not key.startswith("pooler."))
        if missing:
            raise ValueError(
                f"{path}: {len(missing)} weights of the {cls.kind} text encoder are missing from the folder (e.g. "
                f"{missing[0]}): it holds another kind of model or incomplete weights; load it with its own kind, or "
                "use a complete copy of the model"
            )
        mismatched = sorted(loading.get("mismatched_keys", ()))  # (name, shape in the file, shape from config.json)
        if mismatched:
            name, file_shape, config_shape = mismatched[0]
            raise ValueError(
                f"{path}: {len(mismatched)} weights do not fit config.json (e.g. {name} is {tuple(file_shape)} in the "
                f"weights file, {tuple(config_shape)} by the config): the config belongs to another size of the model; "
                "use the config.json that came with these weights"
            )
        return cls(
            model,
            tokenizer,
            path=path,
            tokenizer_path=tokenizer_path,
            pooling=pooling,
            max_length=max_length,
            device=device,
        )

    @classmethod
    def folder_options(cls, path: Path, pooling: str | None, max_length: int | None) -> tuple[str | None, int | None]:
        """The (pooling, max_length) to load ``path`` with; here the caller's, ``None`` meaning the defaults of
        ``__init__`` (the kind's first pooling, the tokenizer's limit)."""
        return pooling, max_length

    def _resolve_max_length(self, requested: int | None) -> int:
        position_limit = getattr(self.model.config, "max_position_embeddings", None)  # T5 has none (relative)
        if requested is None:
            tokenizer_limit = self.tokenizer.model_max_length
            requested = tokenizer_limit if tokenizer_limit < UNSET_MODEL_MAX_LENGTH else position_limit
            if requested is None:
                raise ValueError(
                    f"{self.path}: neither the tokenizer (model_max_length) nor the model config "
                    "(max_position_embeddings) gives a token limit; pass max_length=... (STAR's T5 uses 120)"
                )
            return min(requested, position_limit) if position_limit else requested
        if not isinstance(requested, int) or requested < 2:
            raise ValueError(f"max_length must be an integer >= 2 (room for the special tokens), got {requested!r}")
        if position_limit and requested > position_limit:
            raise ValueError(
                f"max_length={requested} exceeds the {self.kind} model's {position_limit} position embeddings "
                f"({self.path}); use at most {position_limit}"
            )
        return requested

    @property
    def width(self) -> int:
        """D, the hidden width (``hidden_size``; ``d_model`` for T5)."""
        return int(self.model.config.hidden_size)

    def to(self, device: str | torch.device) -> TextEncoder:
        """Move the model to ``device``; later encodings are returned there. Returns ``self``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, width={self.width}, max_length={self.max_length}, "
            f"pooling={self.pooling!r}, device={str(self.device)!r})"
        )

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> TextEncoding:
        """Encode prompts.

        Args:
            prompts: B strings; ``""`` is a valid prompt (the null prompt of CFG: special tokens only).

        Returns:
            ``TextEncoding`` on ``self.device``: hidden (B, T, D) float32, mask (B, T) int64, pooled (B, D)
            float32, with T = ``max_length`` or the longest prompt's token count, by ``padding``.
        """
        prompts = check_prompts(prompts)
        self._warn_if_truncated(prompts)
        tokens = self.tokenizer(
            prompts, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        input_ids = tokens["input_ids"].to(self.device)  # (B, T)
        mask = tokens["attention_mask"].to(self.device, torch.int64)  # (B, T)
        outputs = self.model(input_ids=input_ids, attention_mask=mask)
        hidden = outputs.last_hidden_state.float()  # (B, T, D)
        pooled = self.pool(hidden, mask, outputs).float()  # (B, D)
        return TextEncoding(hidden, mask, pooled)

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """Each prompt's token count as :meth:`encode` sees it (special tokens included, truncated at max_length)."""
        ids = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length, verbose=False)["input_ids"]
        return [len(row) for row in ids]

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, outputs: Any) -> torch.Tensor:
        """(B, T, D) hidden states and (B, T) mask -> (B, D); ``outputs`` is the model's full output."""
        pool_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = POOLINGS[self.pooling]
        return pool_fn(hidden, mask)

    def _warn_if_truncated(self, prompts: list[str]) -> None:
        # Distinct prompts are counted: the caption cache fills its fixed-size calls with repeats of one caption.
        # Once per encoder, as transformers warns of over-long inputs: training encodes its new captions in chunks of
        # 8 at every step, and a data set of long captions (CLIP's 77 tokens) would log a line per chunk.
        distinct = list(dict.fromkeys(prompts))
        lengths = [len(ids) for ids in self.tokenizer(distinct, truncation=False, verbose=False)["input_ids"]]
        too_long = [(length, prompt) for length, prompt in zip(lengths, distinct) if length > self.max_length]
        if too_long:
            log = logger.debug if self.warned_truncation else logger.warning
            self.warned_truncation = True
            longest, prompt = max(too_long, key=lambda pair: pair[0])
            shown = " ".join(prompt.split())
            shown = shown if len(shown) <= SHOWN_PROMPT_CHARACTERS else shown[: SHOWN_PROMPT_CHARACTERS - 3] + "..."
            log(
                "%d of %d prompts exceed the %s text encoder's limit of %d tokens and are truncated; the longest (%d "
                'tokens): "%s" (said once per encoder; later truncations are logged at debug level; shorten such '
                "captions, or encode with a longer --text-max-length where the model allows it)",
                len(too_long),
                len(distinct),
                self.name,
                self.max_length,
                longest,
                shown,
            )


class CLIPTextEncoder(TextEncoder):
    """CLIP text tower (official STAR): T = ``max_length`` (77), pooled = final hidden state at the EOS token."""

    kind = "clip"
    poolings = ("eos",)
    padding = "max_length"

    @classmethod
    def model_class(cls, transformers: ModuleType) -> type:
        return transformers.CLIPTextModel

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor, outputs: Any) -> torch.Tensor:
        # pooler_output is last_hidden_state at the EOS token (first EOS id, or argmax id in legacy configs).
        # CLIP attends causally, so padding never changes real tokens; the mask only alters padding states.
        return outputs.pooler_output


class T5TextEncoder(TextEncoder):
    """T5 encoder: T = ``max_length``; pooled = mean over real tokens, or ``"mean_all"`` as in STAR's ablation."""

    kind = "t5"
    poolings = ("mean", "mean_all")
    padding = "max_length"

    @classmethod
    def model_class(cls, transformers: ModuleType) -> type:
        return transformers.T5EncoderModel


# Flags of sentence-transformers' Pooling config and the pooling each means here.
SENTENCE_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


class SentenceTextEncoder(TextEncoder):
    """BERT-style sentence-transformers encoder: padded to the longest prompt; pooled as the folder says."""

    kind = "sentence"
    poolings = ("mean", "cls", "max", "mean_sqrt_len")
    padding = "longest"

    @classmethod
    def model_class(cls, transformers: ModuleType) -> type:
        return transformers.AutoModel

    @classmethod
    def folder_options(cls, path: Path, pooling: str | None, max_length: int | None) -> tuple[str | None, int | None]:
        """``None`` options are read from the sentence-transformers files."""
        if max_length is None:
            max_length = sentence_max_length(path)
        if pooling is None:
            pooling = sentence_pooling(path)
        return pooling, max_length


def sentence_max_length(path: Path) -> int | None:
    """``max_seq_length`` of ``sentence_bert_config.json``, or ``None`` when the folder has none."""
    config_path = path / "sentence_bert_config.json"
    if not config_path.is_file():
        return None
    return read_json_file(config_path, "").get("max_seq_length")


def sentence_pooling(path: Path) -> str:
    """The pooling mode of the folder's Pooling module (``modules.json``, else ``1_Pooling/``); ``"mean"`` if none."""
    pooling_folder = path / "1_Pooling"
    if (path / "modules.json").is_file():
        try:
            modules = json.loads((path / "modules.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path / 'modules.json'} is not valid JSON ({err}); the folder is corrupt") from err
        for module in modules if isinstance(modules, list) else []:
            if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
                pooling_folder = path / module.get("path", "1_Pooling")
    config_path = pooling_folder / "config.json"
    if not config_path.is_file():
        return "mean"  # sentence-transformers' default for a plain Hugging Face model
    config = read_json_file(config_path, "")
    enabled = sorted(key for key, value in config.items() if key.startswith("pooling_mode_") and value is True)
    unsupported = [key for key in enabled if key not in SENTENCE_POOLING_FLAGS]
    if unsupported or len(enabled) != 1:
        raise ValueError(
            f"{config_path} enables pooling {enabled}; supported is exactly one of "
            f"{sorted(SENTENCE_POOLING_FLAGS)} (or pass pooling= one of {list(SentenceTextEncoder.poolings)})"
        )
    return SENTENCE_POOLING_FLAGS[enabled[0]]
