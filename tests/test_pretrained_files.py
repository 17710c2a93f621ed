"""Folder index and component files: a missing, corrupt or non-object JSON file, a tensor of the wrong dtype kind or
shape is one clear error, not a traceback; odd folder paths and storage dtypes round trip."""

import pytest
import torch

from nextscale.pretrained import read_json_file
from nextscale.sampling.pipeline import Pipeline


def test_read_json_file_names_each_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected the index"):
        read_json_file(tmp_path / "index.json", "expected the index")
    (tmp_path / "index.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON.*corrupt"):
        read_json_file(tmp_path / "index.json", "")
    (tmp_path / "index.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON list, not an object"):
        read_json_file(tmp_path / "index.json", "")
    (tmp_path / "index.json").write_text('{"a": 1}')
    assert read_json_file(tmp_path / "index.json", "") == {"a": 1}


def test_pipeline_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        Pipeline.from_pretrained(tmp_path)
    (tmp_path / "pipeline.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="corrupt"):
        Pipeline.from_pretrained(tmp_path)


def test_non_finite_weights_in_a_component_folder_are_named_at_load(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from nextscale.pretrained import bundled_model_path, load_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    folder = tmp_path / "tokenizer"
    shutil.copytree(bundled_model_path("bundled:fashion-mnist") / "tokenizer", folder)
    weights = load_file(folder / "model.safetensors")
    weights["decoder.conv_in.weight"][0, 0, 0, 0] = float("nan")
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"non-finite weights \(NaN or inf in decoder\.conv_in\.weight\)"):
        load_component(MultiScaleVQVAE, folder)


@pytest.mark.parametrize("config", [None, [1], "abc"])
def test_a_component_config_without_its_config_object_is_one_clear_error(tmp_path, config):
    import json
    import shutil

    from nextscale.pretrained import bundled_model_path, load_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    folder = tmp_path / "tokenizer"
    shutil.copytree(bundled_model_path("bundled:fashion-mnist") / "tokenizer", folder)
    payload = {"class": "MultiScaleVQVAE"} | ({} if config is None else {"config": config})
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r'config\.json has no "config" object.*corrupt'):
        load_component(MultiScaleVQVAE, folder)


def _tiny_component_folders(tmp_path):
    from nextscale.presets import tiny
    from nextscale.pretrained import save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer import ScaleTransformer

    tokenizer_config, transformer_config = tiny()
    torch.manual_seed(0)
    save_component(MultiScaleVQVAE(tokenizer_config), tmp_path / "tokenizer")
    save_component(ScaleTransformer(transformer_config), tmp_path / "transformer")
    return tmp_path / "tokenizer", tmp_path / "transformer"


@pytest.mark.parametrize("stored", [torch.float32, torch.int8])
def test_a_tensor_stored_with_another_kind_of_dtype_is_named_at_load(tmp_path, stored):
    # An integer buffer stored as floats (or float weights stored as integers) used to be converted silently.
    from safetensors.torch import load_file, save_file

    from nextscale.pretrained import load_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    folder, _ = _tiny_component_folders(tmp_path)
    weights = load_file(folder / "model.safetensors")
    name = "quantizer.usage_updates" if stored.is_floating_point else "quantizer.codebook.weight"
    weights[name] = (weights[name] * 100 + 0.7).to(stored)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ValueError, match=rf"{name} is stored as torch\.{str(stored)[6:]}, but the model holds"):
        load_component(MultiScaleVQVAE, folder)


def test_storage_dtype_and_odd_paths_round_trip(tmp_path):
    """float16 storage loads back as float32; a non-ASCII folder and a symlinked folder load the same weights."""
    from nextscale.pretrained import load_component, save_component
    from nextscale.transformer import ScaleTransformer

    _, folder = _tiny_component_folders(tmp_path / "ünïcødé models")
    model = load_component(ScaleTransformer, folder)
    save_component(model, tmp_path / "half", dtype=torch.float16)
    half = load_component(ScaleTransformer, tmp_path / "half")
    assert all(tensor.dtype == torch.float32 for tensor in half.state_dict().values())
    torch.testing.assert_close(half.pos_embed, model.pos_embed.half().float(), rtol=0, atol=0)
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    linked = load_component(ScaleTransformer, tmp_path / "link")
    assert all(torch.equal(value, linked.state_dict()[key]) for key, value in model.state_dict().items())


def test_a_weights_mismatch_names_the_config_fields_that_were_defaulted(tmp_path):
    import json

    from nextscale.pretrained import load_component
    from nextscale.transformer import ScaleTransformer

    _, folder = _tiny_component_folders(tmp_path)
    payload = json.loads((folder / "config.json").read_text())
    del payload["config"]["embed_dim"]  # an old or hand-written config.json: the default width 1024 is used
    (folder / "config.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"has shape .*config\.json has no embed_dim: their defaults were used"):
        load_component(ScaleTransformer, folder)


def _tiny_pipeline(seed):
    from nextscale import presets
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.model import ScaleTransformer

    torch.manual_seed(seed)
    tokenizer_config, transformer_config = presets.tiny()
    return Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config))


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_a_save_over_a_pipeline_interrupted_midway_leaves_the_old_pipeline_whole(tmp_path, monkeypatch):
    import nextscale.pretrained as pretrained

    folder = tmp_path / "model"
    old, new = _tiny_pipeline(0), _tiny_pipeline(1)
    old.save_pretrained(folder)
    real_save_file, calls = pretrained.save_file, []

    def killed_at_the_transformer(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the tokenizer's weights are written, the transformer's are not
            raise KeyboardInterrupt
        return real_save_file(*args, **kwargs)

    monkeypatch.setattr(pretrained, "save_file", killed_at_the_transformer)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(folder)
    monkeypatch.undo()
    loaded = Pipeline.from_pretrained(folder)  # not the new tokenizer with the old transformer
    assert _same_weights(loaded.tokenizer, old.tokenizer) and _same_weights(loaded.transformer, old.transformer)
    assert sorted(path.name for path in folder.iterdir()) == ["pipeline.json", "tokenizer", "transformer"]
    new.save_pretrained(folder)
    loaded = Pipeline.from_pretrained(folder)
    assert _same_weights(loaded.tokenizer, new.tokenizer) and _same_weights(loaded.transformer, new.transformer)
    assert sorted(path.name for path in folder.iterdir()) == ["pipeline.json", "tokenizer", "transformer"]


def test_a_full_disk_while_saving_over_a_component_replaces_neither_file(tmp_path, monkeypatch):
    import dataclasses
    import errno
    import pathlib

    from nextscale import presets
    from nextscale.pretrained import load_component, save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    config, _ = presets.tiny()
    old = MultiScaleVQVAE(config)
    save_component(old, tmp_path)
    new = MultiScaleVQVAE(dataclasses.replace(config, vocab_size=2 * config.vocab_size))  # a retrained tokenizer
    write_text = pathlib.Path.write_text

    def full_disk_at_the_config(self, *args, **kwargs):
        if "config.json" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk_at_the_config)
    with pytest.raises(OSError, match="No space left"):
        save_component(new, tmp_path)
    monkeypatch.undo()
    assert _same_weights(load_component(MultiScaleVQVAE, tmp_path), old)  # not new weights under the old config
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def _pid_of_an_exited_process() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_the_next_save_removes_the_staging_folders_of_killed_saves_and_keeps_those_of_live_ones(tmp_path, caplog):
    import fcntl
    import logging
    import os

    folder = tmp_path / "model"
    _tiny_pipeline(0).save_pretrained(folder)
    gone = _pid_of_an_exited_process()
    killed = [folder / f".saving-{gone}-k1lled00", folder / f".replaced-{gone}-k1lled01"]  # what a SIGKILL leaves
    for leftover in killed:
        (leftover / "tokenizer").mkdir(parents=True)
        (leftover / "tokenizer" / "model.safetensors").write_bytes(bytes(64))
    locked = folder / f".saving-{gone}-l0cked00"  # its writer runs where its PID is not seen (another container)
    running = folder / f".saving-{os.getpid()}-runn1ng0"  # its writer (this process) runs
    legacy = folder / ".saving-abcd1234"  # named without a PID: cannot be told from a live writer's
    for kept in (locked, running, legacy):
        kept.mkdir()
    Pipeline.from_pretrained(folder)  # loading ignores them
    descriptor = os.open(locked, os.O_RDONLY)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    try:
        with caplog.at_level(logging.WARNING, logger="nextscale.pretrained"):
            _tiny_pipeline(1).save_pretrained(folder)
    finally:
        os.close(descriptor)
    names = sorted(path.name for path in folder.iterdir())
    assert names == sorted([locked.name, running.name, legacy.name, "pipeline.json", "tokenizer", "transformer"])
    [record] = caplog.records
    assert "removed 2 staging folders" in record.getMessage() and all(p.name in record.getMessage() for p in killed)
    assert _same_weights(Pipeline.from_pretrained(folder).transformer, _tiny_pipeline(1).transformer)


def test_a_staging_folder_is_stale_once_its_writer_is_killed_not_while_it_runs(tmp_path):
    import subprocess
    import sys

    from nextscale.pretrained import remove_stale_staging

    writer = (
        "import os, signal, sys\nfrom pathlib import Path\nfrom nextscale.pretrained import staging_folder\n"
        "with staging_folder(Path(sys.argv[1]), '.saving-*') as folder:\n"
        "    (folder / 'weights').write_bytes(bytes(64))\n"
        "    print(folder.name, flush=True)\n"
        "    sys.stdin.read() if sys.argv[2] == 'wait' else os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    running = subprocess.Popen(
        [sys.executable, "-c", writer, str(tmp_path), "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        running_folder = tmp_path / running.stdout.readline().strip()
        killed = subprocess.run([sys.executable, "-c", writer, str(tmp_path), "kill"], capture_output=True, text=True)
        assert killed.returncode == -9
        killed_folder = tmp_path / killed.stdout.strip()
        assert killed_folder.is_dir() and running_folder.is_dir()
        remove_stale_staging(tmp_path, [".saving-*"])
        assert not killed_folder.exists() and (running_folder / "weights").is_file()
    finally:
        running.communicate("")
    assert running.returncode == 0 and list(tmp_path.iterdir()) == []  # the writer removed its own folder


def test_atomic_text_writes_are_utf8_whatever_the_locale(tmp_path):
    import os
    import subprocess
    import sys

    target = tmp_path / "prompts.txt"
    text = "from nextscale.pretrained import atomic_write_text; atomic_write_text({!r}, 'caf\\u00e9 \\u2615\\n')"
    code = text.format(str(target))  # ASCII on the command line: the child's C locale cannot decode more
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert target.read_text(encoding="utf-8") == "café ☕\n"
