"""A tokenizer and a transformer of different codebook sizes are refused with sizes a user can act on.

Loaded from a folder, the message was the constructor's ("vocab sizes differ (tokenizer 32, transformer 64)")
prefixed with pipeline.json, which holds neither size; it now names both component folders' config.json, their
vocab_size, and which folder to replace. Built in Python, the message names the two objects' sizes.
"""

import dataclasses

import pytest

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import save_component
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer


@pytest.fixture
def components():
    tokenizer_config, transformer_config = tiny()  # both 64 codes
    other = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, vocab_size=32))
    return MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config), other


def test_python_construction_names_both_objects_sizes(components):
    _, transformer, other = components
    with pytest.raises(ValueError, match=r"vocab sizes differ \(tokenizer 32, transformer 64\)\. Use the tokenizer"):
        Pipeline(other, transformer)


def test_a_folder_names_both_config_files_their_sizes_and_the_folder_to_replace(tmp_path, components, capsys):
    tokenizer, transformer, other = components
    Pipeline(tokenizer, transformer).save_pretrained(tmp_path / "pipe")
    save_component(other, tmp_path / "pipe" / "tokenizer")  # a 32-code tokenizer copied over the right one
    tokenizer_dir, transformer_dir = tmp_path / "pipe" / "tokenizer", tmp_path / "pipe" / "transformer"
    with pytest.raises(ValueError) as caught:
        Pipeline.from_pretrained(tmp_path / "pipe")
    message = str(caught.value)
    assert message.startswith(f"{tokenizer_dir / 'config.json'} has vocab_size 32 (the tokenizer's codebook size) but ")
    assert f"{transformer_dir / 'config.json'} has vocab_size 64" in message
    assert f"put that tokenizer's folder in {tokenizer_dir} " in message
    assert "pipeline.json" not in message  # it holds neither size

    out = tmp_path / "g.png"
    assert main(["sample", "--model", str(tmp_path / "pipe"), "--class", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has vocab_size 32" in err and "Traceback" not in err and not out.exists()


def test_a_text_folder_names_both_config_files_too(tmp_path, components):
    from tiny_pipelines import tiny_text_transformer

    from nextscale.sampling.text_pipeline import TextPipeline

    tokenizer, _, other = components
    TextPipeline(tokenizer, tiny_text_transformer(text_dim=8)).save_pretrained(tmp_path / "star")
    save_component(other, tmp_path / "star" / "tokenizer")
    with pytest.raises(ValueError, match=r"tokenizer/config.json has vocab_size 32 .*/transformer/config.json has"):
        Pipeline.from_pretrained(tmp_path / "star")
