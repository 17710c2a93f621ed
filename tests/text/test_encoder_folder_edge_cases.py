"""Encoder folders that are almost right: a decoder-only language model given an explicit kind, and a CLIP
tokenizer/ folder that lost its tokenizer_config.json. Each is one line that names the problem and the fix."""

import json
import shutil

import pytest
import torch

from nextscale.text import load_text_encoder


@pytest.fixture(scope="module")
def gpt2_folder(transformers, clip_folder, tmp_path_factory):
    """A tiny GPT-2 (a decoder-only model; config.json model_type "gpt2") with the CLIP fixture's BPE tokenizer."""
    folder = shutil.copytree(clip_folder / "tokenizer", tmp_path_factory.mktemp("gpt2") / "model")
    vocab_size = len(json.loads((folder / "vocab.json").read_text()))
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    torch.manual_seed(0)
    transformers.GPT2Model(config).save_pretrained(folder)
    return folder


DECODER_ONLY = r"model_type 'gpt2', a decoder-only language model.*kind='sentence' for .*bert"


@pytest.mark.parametrize("kind", ["sentence", "clip", "t5"])
def test_a_decoder_only_model_is_refused_whatever_kind_is_given(gpt2_folder, kind):
    with pytest.raises(ValueError, match=DECODER_ONLY) as caught:
        load_text_encoder(gpt2_folder, kind=kind)
    assert "\n" not in str(caught.value)


def test_a_clip_tokenizer_without_its_config_names_the_missing_file(clip_folder, tmp_path):
    copy = shutil.copytree(clip_folder, tmp_path / "clip")
    (copy / "tokenizer" / "tokenizer_config.json").unlink()
    with pytest.raises(
        ValueError, match=r"tokenizer_config\.json is missing from \S+tokenizer, .*; copy it from"
    ) as caught:
        load_text_encoder(copy)
    assert "\n" not in str(caught.value)
