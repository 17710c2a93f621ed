"""The official VQVAE importer: explicit name table, inferred sizes, strict checks, round trips."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from nextscale import presets
from nextscale.tokenizer import MultiScaleVQVAE, TokenizerConfig, load_official_vqvae
from nextscale.tokenizer.official import infer_config, official_to_ours, ours_to_official, to_official_state_dict
from reference_fixtures import require

KEYS_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "var_state_dict_keys.json"


@pytest.fixture(scope="module")
def release_shapes():
    require(KEYS_FILE)
    return {key: tuple(shape) for key, shape in json.loads(KEYS_FILE.read_text())["vqvae_ch160_v4096_z32"].items()}


def test_name_table_is_a_bijection_on_the_release(release_shapes):
    with torch.device("meta"):
        model = MultiScaleVQVAE(TokenizerConfig())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "quantizer.usage_updates"}
    mapped = {official: official_to_ours(official) for official in release_shapes}
    assert None not in mapped.values()
    assert len(set(mapped.values())) == len(mapped) == 324
    assert set(mapped.values()) == set(ours)
    for official, name in mapped.items():
        assert ours_to_official(name, num_phi=4) == official
        assert ours[name] == release_shapes[official], official


def test_infer_config_of_the_release(release_shapes):
    state = {key: torch.empty(shape, device="meta") for key, shape in release_shapes.items()}
    assert infer_config(state) == TokenizerConfig()


def _tiny_model(**changes) -> MultiScaleVQVAE:
    torch.manual_seed(0)
    model = MultiScaleVQVAE(dataclasses.replace(presets.tiny()[0], **changes))
    model.quantizer.code_usage_ema.uniform_()
    return model


@pytest.mark.parametrize(
    "changes",
    [{}, {"num_phi": 0}, {"num_phi": 1}, {"quant_conv_kernel": 1, "attention_in_middle": False}, {"lookup": "cosine"}],
)
def test_official_round_trip_bit_exact(changes):
    model = _tiny_model(**changes)
    official = to_official_state_dict(model)
    assert "quantizer.usage_updates" not in official and "quantize.embedding.weight" in official
    loaded = load_official_vqvae(official, model.config.scale_sides, lookup=model.config.lookup)
    assert loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not loaded.training


def test_identity_phi_checkpoint_loads():
    model = _tiny_model(phi_ratio=0.0)
    loaded = load_official_vqvae(to_official_state_dict(model), model.config.scale_sides)
    assert loaded.config.phi_ratio == 0.0 and len(list(loaded.quantizer.phis.parameters())) == 0


def test_load_from_file_and_foreign_usage_rows(tmp_path):
    model = _tiny_model()
    official = to_official_state_dict(model)
    official["quantize.ema_vocab_hit_SV"] = torch.ones(7, model.config.vocab_size)  # another scale schedule
    path = tmp_path / "vae.pth"
    torch.save(official, path)
    loaded = load_official_vqvae(path, model.config.scale_sides)
    assert torch.equal(loaded.quantizer.codebook.weight, model.quantizer.codebook.weight)
    assert loaded.quantizer.code_usage_ema.abs().sum() == 0  # kept its own, like the official loader


def test_state_dict_that_does_not_fit():
    official = to_official_state_dict(_tiny_model())
    sides = presets.tiny()[0].scale_sides
    missing = dict(official)
    del missing["decoder.up.0.block.0.conv2.bias"]
    with pytest.raises(ValueError, match=r"missing 1 key\(s\) \['decoder.up.0.block.0.conv2.bias'\]"):
        load_official_vqvae(missing, sides)
    extra = dict(official, **{"decoder.up.0.block.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unexpected 1 key\(s\)"):
        load_official_vqvae(extra, sides)
    wrong = dict(official)
    wrong["post_quant_conv.weight"] = torch.zeros(8, 8, 1, 1)
    with pytest.raises(ValueError, match=r"post_quant_conv.weight has shape \(8, 8, 1, 1\)"):
        load_official_vqvae(wrong, sides)
    with pytest.raises(ValueError, match="not an official VAR VQVAE state dict"):
        load_official_vqvae({"weight": torch.zeros(1)}, sides)


def test_unreadable_files(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match=r"corrupt.pth is not a PyTorch checkpoint \(corrupt, truncated"):
        load_official_vqvae(corrupt)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ValueError, match="list.pth holds a list, not a state dict"):
        load_official_vqvae(not_a_dict)
    with pytest.raises(FileNotFoundError, match="missing.pth not found"):
        load_official_vqvae(tmp_path / "missing.pth")
