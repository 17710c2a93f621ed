"""Saving and loading pipeline folders from Python: bad targets and arguments are refused before anything is
written, and load errors name the file and the fix."""

import json
import shutil

import pytest
import torch

from nextscale.presets import tiny
from nextscale.pretrained import bundled_model_path, save_component
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.model import ScaleTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pipe():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    return Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config))


def test_saving_onto_a_file_says_so(pipe, tmp_path):
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file"):
        pipe.save_pretrained(target)


def test_saving_to_a_bundled_name_is_refused(pipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="shipped with the package"):
        pipe.save_pretrained("bundled:fashion-mnist")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_storage_dtype_is_refused_before_writing(pipe, tmp_path):
    with pytest.raises(TypeError, match="torch.float16"):
        pipe.save_pretrained(tmp_path / "model", dtype="fp16")
    assert not (tmp_path / "model").exists()
    with pytest.raises(TypeError, match="torch.float16"):
        save_component(pipe.tokenizer, tmp_path / "tokenizer", dtype="fp16")


def test_a_reduced_precision_pipeline_is_not_saved(pipe, tmp_path):
    pipe.use_precision("bf16")
    with pytest.raises(ValueError, match="float32 pipeline"):
        pipe.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_save_over_an_existing_folder_and_reload_reproduces(pipe, tmp_path):
    expected = pipe(class_labels=[1, 2], seed=3, output_type="pt")
    pipe.save_pretrained(tmp_path / "model")
    pipe.save_pretrained(tmp_path / "model")  # replaces the files in place
    loaded = Pipeline.from_pretrained(tmp_path / "model")
    again = loaded(class_labels=[1, 2], seed=3, output_type="pt")
    assert torch.equal(again.tokens, expected.tokens) and torch.equal(again.images, expected.images)


def test_a_bad_device_name_is_a_clear_error():
    with pytest.raises(ValueError, match="is not a torch device"):
        Pipeline.from_pretrained("bundled:fashion-mnist", device="gpu")


def test_errors_from_pipeline_json_name_the_file(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path("fashion-mnist"), folder)
    index = json.loads((folder / "pipeline.json").read_text())
    index["class_names"] = index["class_names"][:3]
    (folder / "pipeline.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"pipeline\.json: got 3 class names"):
        Pipeline.from_pretrained(folder)


def test_loading_under_a_float64_default_dtype_gives_the_float32_pipeline(pipe, tmp_path):
    expected = pipe(class_labels=[1, 2], seed=3, output_type="pt")
    pipe.save_pretrained(tmp_path / "model")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # as a notebook might
    try:
        loaded = Pipeline.from_pretrained(tmp_path / "model")
        again = loaded(class_labels=[1, 2], seed=3, output_type="pt")
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert all(p.dtype == torch.float32 for p in loaded.transformer.parameters())
    assert torch.equal(again.tokens, expected.tokens) and torch.equal(again.images, expected.images)
