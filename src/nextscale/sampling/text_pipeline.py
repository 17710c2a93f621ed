"""``TextPipeline``: text-to-image next-scale generation (STAR) from prompts or precomputed text features.

Folder layout: a class pipeline's folder plus ``text_encoder/`` (a reference to a local encoder or its
Hugging Face files, see ``nextscale.text.reference``); ``pipeline.json`` records
``"text_encoder": "text_encoder"`` or ``null`` when the folder has none (then the pipeline samples from
precomputed features only, as diffusers' ``prompt_embeds``).

The unconditional input of classifier-free guidance is the empty prompt's encoding (as in the official
STAR sampler); a negative prompt replaces it.

References: diffusers ``StableDiffusionPipeline.__call__`` (``prompt_embeds`` / ``negative_prompt_embeds``);
Ma et al., STAR (arXiv 2406.10797); STAR_REFERENCE.md section 7.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch

from nextscale.pretrained import load_component
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.pipeline_folder import (
    SAVED_ENTRIES,
    check_folder_fit,
    load_named_component,
    pipeline_json_errors,
)
from nextscale.text import TextEncoder, load_text_encoder_folder, save_text_encoder_reference
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.text_model import TextScaleTransformer

logger = logging.getLogger(__name__)

TEXT_ENCODER_DIR = "text_encoder"


def check_text_encoder(text_encoder: object) -> None:
    """Refuse what is not an encoder (a path to one, most likely) before its missing ``width`` fails obscurely."""
    if isinstance(text_encoder, (str, os.PathLike)):
        raise TypeError(
            f"text_encoder must be a loaded encoder, not the path {str(text_encoder)!r}: pass "
            "nextscale.text.load_text_encoder(path) (or load_default_text_encoder())"
        )
    if text_encoder is not None and not (hasattr(text_encoder, "encode") and hasattr(text_encoder, "width")):
        raise TypeError(
            f"text_encoder must be a text encoder with .encode(prompts) and .width (nextscale.text.load_text_encoder"
            f"(path)), got {type(text_encoder).__name__}"
        )


def feature_tensor(value: object, name: str, shape: str) -> torch.Tensor:
    """A precomputed text feature as a float32 tensor; anything that is not numbers (a string, a list of strings)
    is refused naming the argument, rather than with torch's "new(): invalid data type 'str'"."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a {shape} tensor of numbers, got a string; text goes in prompt=...")
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{name} must be a {shape} tensor or array of numbers, got {type(value).__name__}") from err


class TextPipeline(Pipeline):
    """``pipe(prompt=["a red apple"], cfg=4.0, seed=0).images``.

    A folder's recommended settings are not applied by the call; pass them as the CLI does:
    ``pipe = Pipeline.from_pretrained("bundled:scenes")`` then
    ``pipe(prompt=["a bag in the top left"], seed=0, **pipe.recommended_sampling)`` (cfg 3, top_k 10).
    Text editing regenerates a region towards one prompt: ``pipe.inpaint(image, box=(0, 0, 0.5, 0.5),
    prompt="a bag in the top left", seed=0)`` (see :meth:`edit`).

    Args:
        tokenizer: the multi-scale VQ-VAE.
        transformer: a :class:`TextScaleTransformer`.
        text_encoder: the frozen encoder the transformer was trained with (its width must equal the
            transformer's ``text_dim``), or None to sample from precomputed features only.
    """

    def __init__(
        self,
        tokenizer: MultiScaleVQVAE,
        transformer: TextScaleTransformer,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        super().__init__(tokenizer, transformer)  # checks the transformer and that the components fit
        check_text_encoder(text_encoder)
        if text_encoder is not None and text_encoder.width != transformer.config.text_dim:
            raise ValueError(
                f"the text encoder {text_encoder.name!r} has width {text_encoder.width}, but the transformer expects "
                f"{transformer.config.text_dim}; use the encoder the model was trained with"
            )
        self.text_encoder = text_encoder
        self.warned_batch0 = False  # see warn_about_batch0_cross_attention

    @staticmethod
    def check_transformer(transformer: torch.nn.Module) -> None:
        """Refuse anything but a TextScaleTransformer (one clear line)."""
        if not isinstance(transformer, TextScaleTransformer):
            raise TypeError(
                f"TextPipeline needs a TextScaleTransformer, got {type(transformer).__name__}; "
                "class-conditional models go in a Pipeline"
            )

    # ----------------------------------------------------------------------------------------- folders
    @classmethod
    def from_components(cls, path: Path, index: dict, device: str | torch.device) -> TextPipeline:
        tokenizer_dir = path / index.get("tokenizer", "tokenizer")
        transformer_dir = path / index.get("transformer", "transformer")
        tokenizer = load_named_component(tokenizer_dir, device)
        transformer = load_component(TextScaleTransformer, transformer_dir, device)
        check_folder_fit(tokenizer_dir, tokenizer, transformer_dir, transformer)
        encoder_dir = index.get("text_encoder")
        text_encoder = None if encoder_dir is None else load_text_encoder_folder(path / encoder_dir, device=device)
        with pipeline_json_errors(path):
            return cls(tokenizer, transformer, text_encoder).recommend(**index.get("recommended_sampling", {}))

    def index(self) -> dict:
        return {**super().index(), "text_encoder": None if self.text_encoder is None else TEXT_ENCODER_DIR}

    def save_pretrained(
        self, path: str | Path, dtype: torch.dtype | None = None, copy_text_encoder: bool = False
    ) -> None:
        """Write the folder; the text encoder is recorded by package or path (or copied with copy_text_encoder).
        ``dtype`` as for :meth:`Pipeline.save_pretrained`.

        Over an existing pipeline, ``text_encoder/`` is staged and swapped in with the other entries (as
        :meth:`Pipeline.save_pretrained` does for them): an interrupted save leaves the old pipeline whole, never
        its transformer with the new encoder reference (another encoder, pooling or max_length loads silently).
        """
        path = self.check_save_target(path, dtype)
        # An encoder whose files are the folder's own text_encoder/ (a copy, or a model folder put there) is copied
        # into the staged one: the swap replaces the folder its reference would point at.
        encoder = self.text_encoder
        own = encoder is not None and encoder.path.resolve().is_relative_to((path / TEXT_ENCODER_DIR).resolve())
        entries = (*SAVED_ENTRIES, TEXT_ENCODER_DIR)
        self.save_entries(
            path, entries, lambda folder: self.write_text_entries(folder, dtype, copy_text_encoder or own)
        )

    def write_text_entries(self, folder: Path, dtype: torch.dtype | None, copy_text_encoder: bool) -> None:
        """Write ``text_encoder/`` (if any), the components and pipeline.json into ``folder`` (pipeline.json last)."""
        if self.text_encoder is not None:
            save_text_encoder_reference(folder / TEXT_ENCODER_DIR, self.text_encoder, copy_files=copy_text_encoder)
        self.write_entries(folder, dtype)

    def move_components(self, device: torch.device) -> None:
        """Move the components, the text encoder included (``Pipeline.to`` calls this in the pipeline's turn, so a
        call in another thread never encodes its prompts on a device the encoder just left)."""
        super().move_components(device)
        if self.text_encoder is not None:
            self.text_encoder.to(device)

    @property
    def num_classes(self) -> int:
        """Refused: a text pipeline is conditioned on prompts, not classes."""
        raise AttributeError("a text pipeline has no classes")

    @property
    def is_text_conditional(self) -> bool:
        """True: the pipeline takes prompts."""
        return True

    def describe_conditioning(self) -> list[str]:
        """The ``__repr__`` entries about the text conditioning: the encoder (or none) and its width."""
        encoder = "None (precomputed features only)" if self.text_encoder is None else repr(self.text_encoder.name)
        return [f"text_encoder={encoder}", f"text_dim={self.transformer.config.text_dim}"]

    # ---------------------------------------------------------------------------------------- sampling
    def encode_prompt(self, prompts: str | list[str]) -> TextCondition:
        """Prompts -> text features with the pipeline's encoder."""
        if isinstance(prompts, (bytes, bytearray)):
            raise TypeError(f"prompt must be a string, got bytes {prompts!r}; decode it first: prompt.decode()")
        if isinstance(prompts, (set, frozenset)):  # images come out in prompt order, which a set does not keep
            raise TypeError("prompt must be a string or an ordered list of strings, got a set; pass a list")
        if not isinstance(prompts, Iterable) or isinstance(prompts, dict):
            raise TypeError(f"prompt must be a string or a list of strings, got {type(prompts).__name__}")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("the prompt list is empty; give at least one prompt")
        bad = [text for text in prompts if not isinstance(text, str)]
        if bad:
            # None is a class pipeline's unconditional row; a text pipeline's is the empty prompt
            hint = "; for an unconditional row use the empty prompt ''" if bad[0] is None else ""
            raise TypeError(f"prompts must be strings, got {bad[0]!r}{hint}")
        prompts = [str(text) for text in prompts]  # numpy's str_ as plain str
        if self.text_encoder is None:
            raise ValueError(
                "this pipeline has no text encoder (it was converted without --text-encoder): give precomputed "
                "features (`sample --text-features FILE`; in Python prompt_embeds and pooled_prompt_embeds, with "
                "negative_* for guidance), or convert again with --text-encoder DIR"
            )
        encoding = self.text_encoder.encode(prompts)
        return TextCondition(encoding.hidden, encoding.mask.long(), encoding.pooled).to(self.device)

    def features(
        self, embeds: torch.Tensor | None, mask: torch.Tensor | None, pooled: torch.Tensor | None, name: str
    ) -> TextCondition | None:
        """Precomputed (B, T, D) hidden states, (B, T) mask (default: all real) and (B, D) pooled vectors.

        ``name`` is "prompt" or "negative_prompt": the arguments are ``{name}_embeds``, ``{name}_attention_mask`` and
        ``pooled_prompt_embeds`` / ``negative_pooled_prompt_embeds``.
        """
        pooled_name = name.replace("prompt", "pooled_prompt") + "_embeds"  # negative_pooled_prompt_embeds
        if isinstance(embeds, TextCondition):  # what encode_prompt returns, passed whole
            raise TypeError(
                f"{name}_embeds takes the (B, T, D) hidden states, not the TextCondition encode_prompt returns: pass "
                f"its parts, {name}_embeds=c.hidden, {name}_attention_mask=c.mask, {pooled_name}=c.pooled"
            )
        if embeds is None:
            if mask is not None or pooled is not None:
                raise ValueError(f"{name}_attention_mask / {pooled_name} need {name}_embeds too")
            return None
        if pooled is None:
            raise ValueError(f"{name}_embeds needs {pooled_name} (B, D): the first token map is built from it")
        embeds = feature_tensor(embeds, f"{name}_embeds", "(B, T, D)")
        if embeds.ndim != 3:
            raise ValueError(f"{name}_embeds must be (B, T, D), got {tuple(embeds.shape)}")
        if embeds.shape[0] == 0:
            raise ValueError(f"{name}_embeds holds no rows (B = 0); give the features of at least one prompt")
        if embeds.shape[1] == 0:  # the cross-attention would have no token to attend to
            raise ValueError(
                f"{name}_embeds has no tokens (T = 0, shape {tuple(embeds.shape)}); give the text encoder's per-token "
                "features, at least one real token per row (even the empty prompt '' encodes to its special tokens)"
            )
        width = self.transformer.config.text_dim
        pooled = feature_tensor(pooled, pooled_name, "(B, D)")
        pooled_width = pooled.shape[-1:]
        if embeds.shape[-1] != width or tuple(pooled_width) != (width,):
            raise ValueError(
                f"{name}_embeds and {pooled_name} must have width D = {width} (the transformer's text_dim), "
                f"got {embeds.shape[-1]} and {tuple(pooled_width)[0] if pooled_width else None}; encode with the "
                "encoder the model was trained with"
            )
        if pooled.ndim != 2 or pooled.shape[0] != embeds.shape[0]:
            raise ValueError(
                f"{pooled_name} must be (B, D) with one row per row of {name}_embeds: B = {embeds.shape[0]}, got "
                f"{tuple(pooled.shape)}"
            )
        if not (torch.isfinite(embeds).all() and torch.isfinite(pooled).all()):
            raise ValueError(f"{name}_embeds or {pooled_name} hold NaN or infinite values; encode the prompts again")
        if mask is not None:
            mask = feature_tensor(mask, f"{name}_attention_mask", "(B, T) of 1 and 0")
            if not ((mask == 0) | (mask == 1)).all():  # the cross-attention keeps exactly the 1s (STAR's convention)
                raise ValueError(f"{name}_attention_mask must hold 1 (real token) and 0 (padding) only")
            if mask.shape != embeds.shape[:2]:
                raise ValueError(
                    f"{name}_attention_mask must be (B, T) = {tuple(embeds.shape[:2])}, one entry per token of "
                    f"{name}_embeds, got {tuple(mask.shape)}"
                )
            empty = (mask.sum(dim=1) == 0).nonzero().flatten().tolist()
            if empty:  # such a row's cross-attention would attend to nothing
                raise ValueError(
                    f"{name}_attention_mask has no real token (all 0) in row(s) {empty}; mark each row's real tokens "
                    "with 1, at least one per row (the encoder's mask of the prompt, even of the empty prompt '')"
                )
        mask = torch.ones(embeds.shape[:2], dtype=torch.long) if mask is None else mask.long()
        return TextCondition(embeds, mask, pooled).to(self.device)

    def make_condition(self, class_labels, prompt, num_images_per_prompt, guided, text_inputs) -> TextCondition:
        """Prompts or precomputed features (plus the negative / empty prompt) -> a TextCondition."""
        if class_labels is not None:
            raise ValueError(
                "this pipeline is text-conditional; pass prompt=[...] (class labels need a class pipeline)"
            )
        given = self.features(
            text_inputs.get("prompt_embeds"),
            text_inputs.get("prompt_attention_mask"),
            text_inputs.get("pooled_prompt_embeds"),
            "prompt",
        )
        if (prompt is None) == (given is None):
            raise ValueError("give exactly one of prompt=[...] or prompt_embeds + pooled_prompt_embeds")
        condition = self.encode_prompt(prompt) if prompt is not None else given
        negative = self.features(
            text_inputs.get("negative_prompt_embeds"),
            text_inputs.get("negative_prompt_attention_mask"),
            text_inputs.get("negative_pooled_prompt_embeds"),
            "negative_prompt",
        )
        negative_prompt = text_inputs.get("negative_prompt")
        if not guided and (negative is not None or negative_prompt is not None):
            logger.warning(  # sampled as if it were not given: say so rather than ignore it silently
                "the negative prompt has no effect: guidance is off (cfg 0); give cfg > 0 for it to steer the images"
            )
        if negative_prompt is not None:
            if negative is not None:
                raise ValueError("give negative_prompt or negative_prompt_embeds, not both")
            negative = self.encode_prompt(negative_prompt)
        elif negative is None and (guided or self.text_encoder is not None):
            if self.text_encoder is None:
                raise ValueError(
                    "guidance needs the unconditional features: add negative_prompt_embeds and "
                    "negative_pooled_prompt_embeds (the empty prompt's encoding) to the features, use cfg 0, or a "
                    "pipeline with a text encoder"
                )
            negative = self.encode_prompt([""])
        if negative is not None and len(negative) not in (1, len(condition)):
            raise ValueError(f"give 1 or {len(condition)} negative prompts, got {len(negative)}")
        condition = TextCondition(condition.hidden, condition.mask, condition.pooled, negative)
        self.warn_about_batch0_cross_attention(condition)
        return condition.repeat_interleave(num_images_per_prompt)

    def warn_about_batch0_cross_attention(self, condition: TextCondition) -> None:
        """A converted STAR model reproduces the official batch-0 cross-attention: every row of a batch attends
        to the first row's text. The official sampler draws one prompt per batch, where that is harmless; a
        batch of different prompts gives every image the first prompt's text, so say so (once per pipeline)."""
        if not getattr(self.transformer.config, "official_batch0_cross_attention", False) or self.warned_batch0:
            return
        if len(condition) > 1 and not torch.equal(condition.hidden, condition.hidden[:1].expand_as(condition.hidden)):
            self.warned_batch0 = True
            logger.warning(
                "this model reproduces the official STAR batch-0 cross-attention: in a batch of different prompts "
                "every image attends to the first prompt's text. Sample one prompt per batch (on the command line "
                "--batch-size equal to --num; in Python one prompt per call), or convert with "
                "--per-sample-cross-attention"
            )

    # ----------------------------------------------------------------------------------------- editing
    def edit_condition(self, class_label: int | None, prompt: str | None) -> dict:
        """What an edit conditions the regenerated part on: the prompt, or the empty prompt."""
        if class_label is not None:
            raise ValueError("this pipeline is text-conditional; edit with prompt=... (labels need a class pipeline)")
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(
                f"an edit takes one prompt (a string), got {type(prompt).__name__}; edit once per prompt, with "
                "num_images=N for several results"
            )
        return {"prompt": ["" if prompt is None else prompt]}
