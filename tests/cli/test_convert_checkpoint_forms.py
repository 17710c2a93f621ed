"""`nextscale convert` reads every common packing of the official weights (wrappers, trainer states, DDP /
torch.compile key prefixes, safetensors) and explains the rest: swapped files name their flag, a schedule the
file records wins over a guess, and --image-size never contradicts the weights silently."""

import pytest
import torch
from convert_helpers import official_state_dicts, one_line_error, same_weights
from safetensors.torch import save_file

from nextscale.cli import main
from nextscale.scales import SIDES_256, SIDES_512
from nextscale.tokenizer.official import load_official_vqvae, read_official_vqvae
from nextscale.transformer.official import load_official_var, read_official_var
from nextscale.transformer.text_official import load_official_star, read_official_star
from reference_fixtures import STAR_PARITY, VAR_PARITY, require


@pytest.fixture(scope="module")
def official():
    """The three fixture state dicts, plain (STAR's file nests its model in a trainer state)."""
    return official_state_dicts()


@pytest.fixture(scope="module")
def reference_models(official):
    return {
        "var": load_official_var(official["var"]),
        "vae": load_official_vqvae(official["vae"]),
        "star": load_official_star(official["star"]),
    }


READERS = {"var": read_official_var, "vae": read_official_vqvae, "star": read_official_star}
LOADERS = {"var": load_official_var, "vae": load_official_vqvae, "star": load_official_star}


def trainer_state(official, config=None) -> dict:
    """An official trainer checkpoint (VAR_REFERENCE.md section 5) holding the VAR model and the VQVAE."""
    trainer = {"config": config or {}, "var_wo_ddp": official["var"], "vae_local": official["vae"], "var_opt": {}}
    return {"epoch": 1, "iter": 2, "trainer": trainer, "args": {}}


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "ema"])
@pytest.mark.parametrize("component", ["var", "vae", "star"])
def test_one_level_of_wrapper_is_unwrapped(official, reference_models, tmp_path, component, wrapper):
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: official[component], "epoch": 3}, path)
    checkpoint = READERS[component](path)
    assert checkpoint.location == f"[{wrapper!r}]" and checkpoint.notes() == [f"read [{wrapper!r}]"]
    assert same_weights(LOADERS[component](checkpoint), reference_models[component])


def test_several_wrapped_state_dicts_are_refused_by_name(official):
    with pytest.raises(ValueError, match=r"several state dicts \['model', 'ema'\]; save the one to convert"):
        read_official_var({"model": official["var"], "ema": official["var"]})


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
@pytest.mark.parametrize("component", ["var", "vae", "star"])
def test_ddp_and_compile_prefixes_are_stripped(official, reference_models, component, prefix):
    prefixed = {prefix + key: value for key, value in official[component].items()}
    checkpoint = READERS[component](prefixed)
    assert checkpoint.prefix == prefix and checkpoint.notes() == [f"stripped key prefix {prefix!r}"]
    assert same_weights(LOADERS[component](checkpoint), reference_models[component])


def test_a_prefix_on_some_keys_only_is_not_stripped(official):
    partly = {("module." + key if key.startswith("blocks.") else key): value for key, value in official["var"].items()}
    with pytest.raises(ValueError, match=r"missing \['blocks.0.ffn.fc1.weight'\]"):
        load_official_var(partly)


@pytest.mark.parametrize("component", ["var", "vae", "star"])
def test_safetensors_files_are_read_with_safetensors(official, reference_models, tmp_path, component):
    path = tmp_path / f"{component}.safetensors"
    save_file({key: value.contiguous() for key, value in official[component].items()}, str(path))
    assert same_weights(LOADERS[component](path), reference_models[component])
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="broken.safetensors could not be read as a safetensors file"):
        READERS[component](broken)
    text = tmp_path / "text.safetensors"
    text.write_text("not weights\n")
    with pytest.raises(ValueError, match="text.safetensors is not a safetensors file"):
        READERS[component](text)


def test_cli_converts_wrapped_prefixed_and_safetensors_files_and_says_so(official, tmp_path, capsys):
    var, vae = tmp_path / "var.pth", tmp_path / "vae.safetensors"
    torch.save({"model": {"module." + key: value for key, value in official["var"].items()}}, var)
    save_file({key: value.contiguous() for key, value in official["vae"].items()}, str(vae))
    assert main(["convert", "--vae", str(vae), "--var", str(var), "--out", str(tmp_path / "out")]) == 0
    summary = capsys.readouterr().out
    assert "--var: read ['model'], stripped key prefix 'module.'" in summary and "--vae:" not in summary


def test_vae_and_var_read_the_same_trainer_state(official, tmp_path, capsys):
    path = tmp_path / "ar-ckpt-last.pth"
    torch.save(trainer_state(official, {"patch_nums": SIDES_256, "resos": tuple(16 * s for s in SIDES_256)}), path)
    argv = ["convert", "--vae", str(path), "--var", str(path), "--out", str(tmp_path / "out"), "--image-size", "256"]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "--var: read ['trainer']['var_wo_ddp']; --vae: read ['trainer']['vae_local']" in summary


def test_a_trainer_state_without_the_vqvae_names_what_it_holds(official):
    with pytest.raises(ValueError, match=r"without \['trainer'\]\['vae_local'\]; it holds a STAR .*use --star"):
        read_official_vqvae(require(STAR_PARITY / "star_d2.pth"))
    with pytest.raises(ValueError, match=r"without \['trainer'\]\['var_wo_ddp'\]; it holds the VQVAE .*use --vae"):
        read_official_var({"trainer": {"vae_local": official["vae"]}})


@pytest.mark.parametrize(
    "flags, hint",
    [
        (["--vae", "vae", "--var", "star"], "star.pth is not an official VAR transformer checkpoint: it looks like a "
         "STAR transformer checkpoint (use --star for it)"),
        (["--vae", "vae", "--var", "vae"], "vae.pth is not an official VAR transformer checkpoint: it looks like the "
         "VQVAE (tokenizer) checkpoint (use --vae for it)"),
        (["--vae", "vae", "--star", "vae"], "use --vae for it"),
        (["--vae", "vae", "--star", "var"], "use --var for it"),
        (["--vae", "var", "--var", "var"], "var.pth is not an official VAR VQVAE checkpoint: it looks like a VAR "
         "transformer checkpoint (use --var for it)"),
        (["--vae", "star", "--star", "star"], "it looks like a STAR transformer checkpoint (use --star for it)"),
    ],
)  # fmt: skip
def test_swapped_files_name_the_flag_they_belong_to(official, tmp_path, capsys, flags, hint):
    for name, state in official.items():
        torch.save(state, tmp_path / f"{name}.pth")
    argv = ["convert", *[str(tmp_path / f"{v}.pth") if i % 2 else v for i, v in enumerate(flags)]]
    assert hint in one_line_error([*argv, "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()


def test_star_uses_the_schedule_its_trainer_state_records(official, tmp_path, capsys):
    config = {"patch_nums": list(SIDES_512), "resos": [16 * side for side in SIDES_512], "label_smooth": 0.0}
    path = tmp_path / "star512.pth"
    torch.save({"trainer": {"config": config, "var_wo_ddp": official["star"]}}, path)
    assert load_official_star(path).config.scale_sides == SIDES_512
    assert load_official_star(path, image_size=512).config.scale_sides == SIDES_512
    with pytest.raises(ValueError, match=r"image size 256 \(--image-size\) contradicts the schedule the trainer"):
        load_official_star(path, image_size=256)
    argv = ["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--star", str(path), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "image size 512px" in captured.out and "note:" not in captured.err
    resos_only = {"trainer": {"config": {"resos": config["resos"]}, "var_wo_ddp": official["star"]}}
    assert load_official_star(resos_only).config.scale_sides == SIDES_512
    too_many = {"trainer": {"config": {"patch_nums": [*SIDES_512, 40]}, "var_wo_ddp": official["star"]}}
    with pytest.raises(ValueError, match=r"11 scales\) but the weights have 10 scales"):
        load_official_star(too_many)
    damaged = {"trainer": {"config": {"patch_nums": "1,2,3"}, "var_wo_ddp": official["star"]}}
    with pytest.raises(ValueError, match=r"\['trainer'\]\['config'\]\['patch_nums'\] is '1,2,3'"):
        read_official_star(damaged)


def test_star_says_which_size_it_assumed_for_an_unrecorded_10_scale_schedule(official, tmp_path, capsys):
    path = tmp_path / "star.pth"
    torch.save(official["star"], path)
    argv = ["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--star", str(path), "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "assumed 256 px (pass --image-size 512" in notes[0]


def test_var_refuses_an_image_size_that_contradicts_its_weights(official, tmp_path, capsys):
    argv = ["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--var", str(require(VAR_PARITY / "var_d2.pth"))]
    err = one_line_error([*argv, "--out", str(tmp_path / "o"), "--image-size", "512"], capsys)
    assert "--image-size 512 contradicts the VAR weights" in err and "gives 256 px" in err
    recorded = trainer_state(official, {"patch_nums": SIDES_512})
    with pytest.raises(ValueError, match="records patch_nums .* but its weights are for the schedule"):
        load_official_var(recorded)


@pytest.mark.parametrize(
    "flags", [["--rope-theta", "100"], ["--rope-norm", "32"], ["--per-sample-cross-attention"], ["--text-encoder", "x"]]
)
def test_star_only_flags_are_refused_with_var(tmp_path, capsys, flags):
    """They were silently ignored with --var (a VAR model has no RoPE and no text)."""
    argv = ["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--var", str(require(VAR_PARITY / "var_d2.pth"))]
    err = one_line_error([*argv, "--out", str(tmp_path / "o"), *flags], capsys)
    assert f"{flags[0]} go with --star" in err
    assert not (tmp_path / "o").exists()


def test_a_buffer_with_other_values_says_same_shape(official):
    state = dict(official["var"])
    state["attn_bias_for_masking"] = torch.zeros_like(state["attn_bias_for_masking"])
    with pytest.raises(ValueError, match=r"same shape \(1, 1, 680, 680\), different values"):
        load_official_var(state)
    state["attn_bias_for_masking"] = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"shape \(1, 1, 4, 4\), expected \(1, 1, 680, 680\)"):
        load_official_var(state)


@pytest.mark.parametrize("component", ["var", "vae"])
def test_non_finite_weights_are_refused_before_anything_is_written(official, tmp_path, capsys, component):
    """Such a folder would convert but never load (loading refuses NaN weights): say so at conversion, naming the
    flag whose file holds them."""
    files = {}
    for name in ("var", "vae"):
        state = dict(official[name])
        if name == component:
            key = next(key for key, value in state.items() if value.is_floating_point())
            state[key] = state[key].clone().fill_(float("nan"))
        files[name] = tmp_path / f"{name}.pth"
        torch.save(state, files[name])
    out = tmp_path / "out"
    err = one_line_error(["convert", "--vae", str(files["vae"]), "--var", str(files["var"]), "--out", str(out)], capsys)
    assert f"--{component} {files[component]} holds non-finite weights (NaN or inf in" in err
    assert set(tmp_path.iterdir()) == set(files.values())  # no --out, no staging folder left behind


def test_weights_beyond_float16_are_refused_with_half(official, tmp_path, capsys):
    """--half would turn them into inf, and the written folder would never load."""
    state = dict(official["var"])
    key = next(key for key, value in state.items() if value.is_floating_point())
    state[key] = state[key].clone().fill_(1e6)
    torch.save(state, tmp_path / "var.pth")
    torch.save(official["vae"], tmp_path / "vae.pth")
    flags = ["convert", "--vae", str(tmp_path / "vae.pth"), "--var", str(tmp_path / "var.pth"), "--out"]
    err = one_line_error([*flags, str(tmp_path / "half"), "--half"], capsys)
    assert "holds weights beyond float16's range (|w| > 65504 in " in err and err.endswith("convert without --half")
    assert main([*flags, str(tmp_path / "full")]) == 0  # float32 holds them
