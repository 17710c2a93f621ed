"""Official VAR / STAR / VQVAE files as people actually save them: stray non-tensor entries, ema-pytorch and
PyTorch Lightning wrappers, a VQVAE from another model, and plain pickles. Each is read, or refused in one line that
names the file and the fix."""

import argparse
import pickle

import pytest
import torch
from convert_helpers import official_state_dicts, one_line_error, same_weights

from nextscale.cli import main
from nextscale.official_files import read_official
from nextscale.pretrained import load_weights_only
from nextscale.tokenizer.official import load_official_vqvae, read_official_vqvae
from nextscale.transformer.official import load_official_var, read_official_var
from nextscale.transformer.text_official import load_official_star, read_official_star
from reference_fixtures import VAR_PARITY, require

READERS = {"var": read_official_var, "vae": read_official_vqvae, "star": read_official_star}
LOADERS = {"var": load_official_var, "vae": load_official_vqvae, "star": load_official_star}


@pytest.fixture(scope="module")
def official():
    return official_state_dicts()


def convert_argv(tmp_path, flag: str, model, vae=None) -> list[str]:
    vae = vae or require(VAR_PARITY / "vqvae.pth")
    return ["convert", "--vae", str(vae), flag, str(model), "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("flag, name", [("--var", "var"), ("--star", "star")])
def test_a_stray_entry_among_the_weights_names_the_file_and_the_fix(official, tmp_path, capsys, flag, name):
    path = tmp_path / "model.pth"
    torch.save({**official[name], "epoch": 3}, path)
    err = one_line_error(convert_argv(tmp_path, flag, path), capsys)
    assert f"{path} is not a plain state dict (names -> tensors): it also holds 'epoch' (int)" in err
    assert "keep the tensors only: torch.save(" in err and not (tmp_path / "out").exists()


def test_a_stray_entry_in_a_vqvae_and_in_a_wrapper_says_where_it_sits(official):
    with pytest.raises(
        ValueError, match=r"the given state dict\['model'\] is not a plain state dict .* 'args' \(dict\)"
    ):
        read_official_var({"model": {**official["var"], "args": {"lr": 1e-4}}, "epoch": 3})
    with pytest.raises(ValueError, match=r"it also holds 'note' \(str\)"):
        read_official_vqvae({**official["vae"], "note": "best"})


def test_weights_under_an_unusual_name_are_pointed_to(official):
    with pytest.raises(ValueError, match=r"the weights look to be under \['net'\]: .*torch.save\(checkpoint\['net'\]"):
        read_official_var({"net": official["var"], "epoch": 3, "args": {"depth": 2}})


def ema_pytorch_state(state: dict) -> dict:
    """What ``ema_pytorch.EMA(model).state_dict()`` holds: the averaged weights, the live ones, two counters."""
    averaged = {"ema_model." + key: value for key, value in state.items()}
    online = {"online_model." + key: torch.zeros_like(value) for key, value in state.items()}
    return {**averaged, **online, "initted": torch.tensor(True), "step": torch.tensor(1000)}


@pytest.mark.parametrize("component", ["var", "vae", "star"])
def test_ema_pytorch_states_give_the_averaged_weights(official, tmp_path, component):
    reference = LOADERS[component](official[component])
    path = tmp_path / "ema.pth"
    torch.save(ema_pytorch_state(official[component]), path)
    checkpoint = READERS[component](path)
    assert checkpoint.notes() == ["stripped key prefix 'ema_model.'", "skipped online_model.*, initted, step"]
    assert same_weights(LOADERS[component](checkpoint), reference)  # not the (zero) live copy
    without_online = {
        key: value for key, value in ema_pytorch_state(official[component]).items() if "online" not in key
    }
    assert same_weights(LOADERS[component](without_online), reference)  # include_online_model=False


@pytest.mark.parametrize("component", ["var", "vae", "star"])
def test_lightning_checkpoints_are_read(official, tmp_path, component):
    path = tmp_path / "epoch=3-step=1000.ckpt"
    state_dict = {"model." + key: value for key, value in official[component].items()}
    torch.save(
        {"epoch": 3, "global_step": 1000, "state_dict": state_dict, "optimizer_states": [], "lr_schedulers": []}, path
    )
    checkpoint = READERS[component](path)
    assert checkpoint.notes() == ["read ['state_dict']", "stripped key prefix 'model.'"]
    assert same_weights(LOADERS[component](checkpoint), LOADERS[component](official[component]))


def test_the_cli_summary_says_what_it_took_from_an_ema_pytorch_file(official, tmp_path, capsys):
    path = tmp_path / "ema.pth"
    torch.save(ema_pytorch_state({"module." + key: value for key, value in official["var"].items()}), path)
    assert main(convert_argv(tmp_path, "--var", path)) == 0
    summary = capsys.readouterr().out
    assert "--var: stripped key prefix 'ema_model.module.', skipped online_model.*, initted, step" in summary


def test_a_prefix_is_kept_when_the_stripped_keys_are_no_official_layout(official):
    """``model.`` on every key of something else: nothing is stripped, and the usual layout error names the keys."""
    other = {"model.backbone.weight": torch.zeros(2), "model.head.bias": torch.zeros(2)}
    checkpoint = read_official_var(other)
    assert checkpoint.prefix == "" and set(checkpoint.state) == set(other)
    with pytest.raises(ValueError, match=r"not an official VAR transformer state dict: missing \['pos_start'"):
        load_official_var(other)


@pytest.mark.parametrize("flag, name", [("--var", "var"), ("--star", "star")])
def test_a_vqvae_from_another_model_names_both_files_and_sizes(official, tmp_path, capsys, flag, name):
    vae = dict(official["vae"])
    vae["quantize.embedding.weight"] = vae["quantize.embedding.weight"][:4000]
    vae["quantize.ema_vocab_hit_SV"] = vae["quantize.ema_vocab_hit_SV"][:, :4000]
    vae_path, model_path = tmp_path / "vae4000.pth", tmp_path / "model.pth"
    torch.save(vae, vae_path)
    torch.save(official[name], model_path)
    err = one_line_error(convert_argv(tmp_path, flag, model_path, vae=vae_path), capsys)
    assert f"--vae {vae_path} has codebook size 4000 but {flag} {model_path} was trained with codebook size 4096" in err
    assert "give --vae the VQVAE the transformer was trained with" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_plain_pickle_is_named_as_such_not_as_unsafe(official, tmp_path, capsys, protocol):
    path = tmp_path / "var.pkl"
    with open(path, "wb") as handle:
        pickle.dump(dict(official["var"]), handle, protocol=protocol)
    err = one_line_error(convert_argv(tmp_path, "--var", path), capsys)
    assert f"{path} was written with pickle.dump: it is not a PyTorch or safetensors checkpoint" in err
    assert "re-save the weights with torch.save(state_dict, path)" in err and "could run code" not in err


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_files_keep_loading_and_unsafe_ones_keep_the_safety_message(official, tmp_path, zip_format):
    plain, unsafe = tmp_path / "plain.pth", tmp_path / "unsafe.pth"
    torch.save(official["var"], plain, _use_new_zipfile_serialization=zip_format)
    assert same_weights(load_official_var(plain), load_official_var(official["var"]))
    trainer_args = argparse.Namespace(depth=2)  # a class the weights-only unpickler refuses
    torch.save({"model": official["var"], "args": trainer_args}, unsafe, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(ValueError, match="not a plain state dict / weights-only checkpoint .* could run code"):
        load_weights_only(unsafe)


def test_a_missing_file_names_a_released_file_of_its_kind(tmp_path):
    with pytest.raises(FileNotFoundError, match="none.pth not found; pass the official VAR VQVAE checkpoint"):
        read_official(tmp_path / "none.pth", "VQVAE", load_weights_only)
