"""A pipeline folder whose tokenizer and transformer disagree on scale sides or code width names both folders.

Loaded from a folder, the message was the constructor's ("scale sides differ (tokenizer ..., transformer ...)")
prefixed with pipeline.json, which holds neither value; it now names both component folders' config.json, their
values and the fix, as the vocab-size case does (test_vocab_mismatch_message.py). The raster fit check gives the fix
of the mismatch it found (a vocab-only mismatch was told to change scale_sides).
"""

import dataclasses

import pytest

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import save_component
from nextscale.sampling.pipeline import Pipeline
from nextscale.sampling.raster_pipeline import RasterPipeline
from nextscale.sampling.raster_sampler import check_raster_fit
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.export import load_tokenizer
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer

TOKENIZER_CONFIG, TRANSFORMER_CONFIG = tiny()  # scales (1, 2, 4), code_dim 8, 64 codes


@pytest.fixture
def folder(tmp_path):
    """A good pipeline folder; the tests copy a tokenizer that does not fit over its tokenizer/."""
    Pipeline(MultiScaleVQVAE(TOKENIZER_CONFIG), ScaleTransformer(TRANSFORMER_CONFIG)).save_pretrained(tmp_path / "pipe")
    return tmp_path / "pipe"


def refusal(folder, **tokenizer_changes) -> str:
    save_component(MultiScaleVQVAE(dataclasses.replace(TOKENIZER_CONFIG, **tokenizer_changes)), folder / "tokenizer")
    with pytest.raises(ValueError) as caught:
        Pipeline.from_pretrained(folder)
    return str(caught.value)


def test_scale_sides_name_both_config_files_their_sides_and_a_fix_that_works(folder):
    message = refusal(folder, scale_sides=(1, 2, 3, 4))
    tokenizer_json, transformer_json = folder / "tokenizer" / "config.json", folder / "transformer" / "config.json"
    assert message.startswith(f"{tokenizer_json} has scale_sides [1, 2, 3, 4] (the tokenizer's scale schedule) but ")
    assert f"{transformer_json} has scale_sides [1, 2, 4]: " in message
    assert "pipeline.json" not in message  # it holds neither schedule
    assert f"load_tokenizer('{folder / 'tokenizer'}', (1, 2, 4))" in message

    # the fix the message gives: the same tokenizer weights re-saved on the transformer's schedule
    save_component(load_tokenizer(folder / "tokenizer", (1, 2, 4)), folder / "tokenizer")
    assert Pipeline.from_pretrained(folder).tokenizer.config.scale_sides == (1, 2, 4)


def test_code_width_names_both_config_files_and_the_folder_to_replace(folder):
    message = refusal(folder, code_dim=4)
    assert message.startswith(
        f"{folder / 'tokenizer' / 'config.json'} has code_dim 4 (the width of the tokenizer's codes) but "
        f"{folder / 'transformer' / 'config.json'} has code_dim 8: "
    )
    assert f"put that tokenizer's folder in {folder / 'tokenizer'} " in message
    assert "pipeline.json" not in message and "load_tokenizer" not in message  # no schedule fixes a code width


def test_several_differences_are_named_together_with_the_fix_of_the_worst(folder):
    message = refusal(folder, vocab_size=32, scale_sides=(1, 2, 3, 4))
    assert "has vocab_size 32 (the tokenizer's codebook size) and scale_sides [1, 2, 3, 4] (" in message
    assert "has vocab_size 64 and scale_sides [1, 2, 4]: " in message
    assert "put that tokenizer's folder in" in message and "load_tokenizer" not in message


def test_the_cli_prints_the_folder_message_in_one_line(folder, capsys, tmp_path):
    save_component(MultiScaleVQVAE(dataclasses.replace(TOKENIZER_CONFIG, code_dim=4)), folder / "tokenizer")
    out = tmp_path / "g.png"
    assert main(["sample", "--model", str(folder), "--class", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has code_dim 4" in err and "Traceback" not in err and not out.exists()


def raster_parts(tokenizer_sides, vocab_size=64):
    tokenizer = MultiScaleVQVAE(dataclasses.replace(TOKENIZER_CONFIG, scale_sides=tokenizer_sides))
    config = RasterConfig.from_depth(2, embed_dim=32, num_heads=2, num_classes=10, vocab_size=vocab_size, side=4)
    return tokenizer, RasterTransformer(config)


def test_a_raster_folder_names_the_side_its_transformer_config_holds(tmp_path):
    RasterPipeline(*raster_parts((4,))).save_pretrained(tmp_path / "raster")
    message = refusal(tmp_path / "raster", scale_sides=(1, 2, 4))
    assert f"{tmp_path / 'raster' / 'transformer' / 'config.json'} has side 4 (one 4x4 map: scale_sides [4]): " in (
        message
    )


def test_the_raster_fit_check_gives_the_fix_of_the_mismatch_it_found():
    with pytest.raises(ValueError) as caught:
        check_raster_fit(*raster_parts((4,), vocab_size=32))
    assert "vocab sizes differ (tokenizer 64, transformer 32): use the tokenizer" in str(caught.value)
    assert "scale_sides" not in str(caught.value)  # the schedule fits; changing it fixes nothing

    with pytest.raises(ValueError, match=r"scale sides are \(1, 2, 4\).*load_tokenizer\(path, \(4,\)\)") as caught:
        check_raster_fit(*raster_parts((1, 2, 4)))
    assert "vocab" not in str(caught.value)
