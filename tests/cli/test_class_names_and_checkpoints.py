"""Class names from the data to pipeline.json, `--class NAME`; crafted pickles are refused without running."""

import dataclasses
import json
import os
import unicodedata
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.data.fashion_mnist import CLASS_NAMES
from nextscale.data.images import ImageFolderDataset
from nextscale.data.token_dataset import TokenShardDataset
from nextscale.data.token_manifest import write_manifest
from nextscale.data.token_shards import write_token_shards
from nextscale.presets import tiny
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TrainConfig, TransformerObjective
from nextscale.training.export import export_run
from nextscale.training.transformer_trainer import TransformerTrainer
from nextscale.transformer.model import ScaleTransformer

TESTS = Path(__file__).resolve().parents[1]
IMAGE_FOLDER = TESTS / "assets" / "image_folder"  # bag/, sneaker/
BUNDLED = TESTS.parent / "src" / "nextscale" / "assets" / "demo"


def test_folder_names_survive_training_export_and_label_the_sampled_grid(tmp_path, monkeypatch):
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    transformer = ScaleTransformer(dataclasses.replace(transformer_config, num_classes=2))
    data = ImageFolderDataset(IMAGE_FOLDER, tokenizer_config.image_size, train=False)
    config = TrainConfig(total_steps=1, batch_size=2, warmup=0, log_every=1, checkpoint_every=None, progress=False)
    trainer = TransformerTrainer(transformer, tokenizer, TransformerObjective(), config, tmp_path / "run", data)
    trainer.fit()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["class_names"] == ["bag", "sneaker"]
    export_run(tmp_path / "run", tmp_path / "pipe")
    assert json.loads((tmp_path / "pipe" / "pipeline.json").read_text())["class_names"] == ["bag", "sneaker"]
    pipe = Pipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.class_names == ("bag", "sneaker") and pipe.class_ids(["Sneaker", 0]) == [1, 0]

    import nextscale.data.grids as grids

    drawn, real_make_grid = {}, grids.make_grid

    def spy(batch, nrow=8, padding=2, labels=None):
        drawn["l"] = labels
        return real_make_grid(batch, nrow=nrow, padding=padding, labels=labels)

    monkeypatch.setattr(grids, "make_grid", spy)
    grid = tmp_path / "grid.png"
    assert main(["sample", "--model", str(tmp_path / "pipe"), "--class", "sneaker", "bag", "--out", str(grid)]) == 0
    assert drawn["l"] == ["sneaker", "bag"] and grid.is_file()


def test_token_folders_record_the_class_names(tmp_path):
    tokenizer = MultiScaleVQVAE(tiny()[0]).eval()
    data = ImageFolderDataset(IMAGE_FOLDER, tokenizer.config.image_size, train=False)
    write_token_shards(tokenizer, data, tmp_path, batch_size=4)
    write_manifest(tokenizer, len(data), tmp_path, 50_000, class_names=data.classes)
    assert TokenShardDataset(tmp_path, tokenizer).classes == ["bag", "sneaker"]


def test_class_names_round_trip_through_save_pretrained(tiny_pipeline_dir, tmp_path):
    pipe = Pipeline.from_pretrained(tiny_pipeline_dir)
    pipe.save_pretrained(tmp_path / "copy")
    assert Pipeline.from_pretrained(tmp_path / "copy").class_names == pipe.class_names
    with pytest.raises(ValueError, match="got 3 class names for a model with 10 classes"):
        Pipeline(pipe.tokenizer, pipe.transformer, class_names=["a", "b", "c"])


def test_a_whole_class_name_wins_over_a_part_and_a_shared_part_is_refused():
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer_config = dataclasses.replace(transformer_config, num_classes=4)
    names = ("dog/cat", "cat", "tabby/kitten", "siamese/kitten")
    pipe = Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config), class_names=names)
    assert pipe.class_ids(["cat", "dog", "Tabby", "siamese/kitten"]) == [1, 0, 2, 3]  # "cat" was class 0
    with pytest.raises(ValueError, match=r"'kitten' is part of several names \(2 tabby/kitten, 3 siamese/kitten\)"):
        pipe.class_ids(["kitten"])  # was silently class 2


def test_a_name_matches_however_unicode_spells_its_accents():
    # A folder copied from a Mac spells "é" as "e" + a combining accent: typing "café crème" was refused, and the
    # error listed a name that looked the same.
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    transformer_config = dataclasses.replace(transformer_config, num_classes=2)
    names = (unicodedata.normalize("NFD", "café crème"), "Straße")
    pipe = Pipeline(MultiScaleVQVAE(tokenizer_config), ScaleTransformer(transformer_config), class_names=names)
    assert pipe.class_ids([unicodedata.normalize("NFC", "Café Crème"), "STRASSE", "straße"]) == [0, 1, 1]


def test_the_bundled_fashion_mnist_pipeline_carries_the_ten_names():
    assert tuple(json.loads((BUNDLED / "pipeline.json").read_text())["class_names"]) == CLASS_NAMES
    pipe = Pipeline.from_pretrained(BUNDLED)
    assert pipe.class_ids(["t-shirt", "ankle boot", "Ankle_Boot", "bag"]) == [0, 9, 9, 8]


class RunsCode:
    """Unpickling this (without weights_only) would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("flag", ["--var", "--star", "--vae"])
def test_convert_refuses_a_crafted_pickle_in_one_line_without_running_it(flag, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"weight": RunsCode(marker)}, evil)
    args = {"--vae": evil, "--var": evil} if flag != "--star" else {"--vae": evil, "--star": evil}
    if flag == "--vae":  # a good transformer file would be needed first; the tokenizer file is read on its own
        from nextscale.tokenizer.official import load_official_vqvae

        with pytest.raises(ValueError, match="not a plain state dict / weights-only checkpoint"):
            load_official_vqvae(evil)
    else:
        argv = ["convert", *[str(x) for pair in args.items() for x in pair], "--out", str(tmp_path / "out")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "not a plain state dict / weights-only checkpoint" in err and "will not be loaded" in err
        assert "save a state dict" in err
    assert not marker.exists()
