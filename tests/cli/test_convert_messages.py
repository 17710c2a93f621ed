"""What `nextscale convert` says about an official VQVAE file that does not fit: only the problems there are, in a
line a reader takes in at once."""

import pytest
import torch

from nextscale import presets
from nextscale.cli import main
from nextscale.tokenizer import MultiScaleVQVAE
from nextscale.tokenizer.official import load_official_vqvae, to_official_state_dict
from reference_fixtures import STAR_PARITY, VAR_PARITY, require


def test_a_vqvae_with_an_extra_key_names_that_key_only():
    torch.manual_seed(0)
    official = to_official_state_dict(MultiScaleVQVAE(presets.tiny()[0]))
    official["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as caught:
        load_official_vqvae(official, presets.tiny()[0].scale_sides)
    message = str(caught.value)
    assert "unexpected 1 key(s) ['decoder.extra.weight']" in message
    assert "missing" not in message  # nothing is missing: no "missing 0 key(s) []"
    assert "TokenizerConfig(" not in message and "vocab 64, code width 8" in message  # the layout in a few words


def test_the_cli_says_it_in_one_short_line(tmp_path, capsys):
    vae = torch.load(require(VAR_PARITY / "vqvae.pth"), map_location="cpu", weights_only=True)
    vae["extra"] = torch.zeros(1)
    torch.save(vae, tmp_path / "vae.pth")
    out = tmp_path / "out"
    argv = ["convert", "--vae", str(tmp_path / "vae.pth"), "--var", str(VAR_PARITY / "var_d2.pth"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 400, err
    assert "unexpected 1 key(s) ['extra']" in err and not out.exists()


def official_file(tmp_path, path, name, change):
    state = torch.load(require(path), map_location="cpu", weights_only=True)
    change(state["trainer"]["var_wo_ddp"] if "trainer" in state else state)
    torch.save(state, tmp_path / name)
    return str(tmp_path / name)


@pytest.mark.parametrize("flag", ["--var", "--star"])
def test_a_transformer_file_that_does_not_fit_is_named_with_its_key(tmp_path, capsys, flag):
    path, key = (
        (VAR_PARITY / "var_d2.pth", "head.bias")
        if flag == "--var"
        else (STAR_PARITY / "star_d2.pth", "head_logits.bias")
    )
    given = official_file(tmp_path, path, "model.pth", lambda state: state.pop(key))
    vae = str(require(VAR_PARITY / "vqvae.pth"))
    assert main(["convert", "--vae", vae, flag, given, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{given}: official" in err and f"missing entries ['{key}']" in err  # which of the two files


def test_a_misshapen_transformer_entry_is_named_once(tmp_path, capsys):
    # It was reported with its shape and again under "missing entries", as if the file lacked it.
    given = official_file(
        tmp_path,
        VAR_PARITY / "var_d2.pth",
        "model.pth",
        lambda state: state.update({"head.bias": state["head.bias"][:-1]}),
    )
    vae = str(require(VAR_PARITY / "vqvae.pth"))
    assert main(["convert", "--vae", vae, "--var", given, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "head.bias: shape" in err and "missing entries" not in err, err
