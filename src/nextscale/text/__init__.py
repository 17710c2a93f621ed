"""Frozen text encoders (CLIP, T5, sentence-transformers) loaded from local folders, for STAR text-to-image.

``transformers`` (the ``text`` extra) is imported only when an encoder is loaded.
"""

from nextscale.text.encoders import CLIPTextEncoder, SentenceTextEncoder, T5TextEncoder, TextEncoder
from nextscale.text.encoding import TextEncoding
from nextscale.text.loading import (
    default_text_encoder_path,
    detect_kind,
    load_default_text_encoder,
    load_text_encoder,
)
from nextscale.text.reference import load_text_encoder_folder, save_text_encoder_reference

__all__ = [
    "CLIPTextEncoder",
    "SentenceTextEncoder",
    "T5TextEncoder",
    "TextEncoder",
    "TextEncoding",
    "default_text_encoder_path",
    "detect_kind",
    "load_default_text_encoder",
    "load_text_encoder",
    "load_text_encoder_folder",
    "save_text_encoder_reference",
]
