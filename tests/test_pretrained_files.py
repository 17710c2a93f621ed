"""Folder index files: a missing, corrupt or non-object JSON file is one clear error, not a traceback."""

import pytest

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
