"""What `nextscale evaluate` reports say about what they measured: the model's kind and token schedule for --loss
(a raster model's loss is over other codes than a next-scale model's) and the sample-size warnings of small-N FID,
precision/recall and KID (a run directory's checkpoint step and weights: test_evaluate_source_step.py)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.cli.evaluate_class import format_class_sweep
from nextscale.cli.evaluate_scores import sample_size_warnings

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(scope="module")
def raster_model(tmp_path_factory):
    """(a random 16 px raster pipeline folder on one 4x4 map, its held-out tokens: 8 labelled test images)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_manifest import write_manifest
    from nextscale.data.token_shards import write_token_shards
    from nextscale.presets import tiny
    from nextscale.sampling.raster_pipeline import RasterPipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.raster_config import RasterConfig
    from nextscale.transformer.raster_model import RasterTransformer

    root = tmp_path_factory.mktemp("raster")
    torch.manual_seed(0)
    config, _ = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(config, in_channels=1, scale_sides=(4,))).eval()
    raster = RasterConfig(embed_dim=32, depth=1, num_heads=1, num_classes=10, vocab_size=config.vocab_size, side=4)
    RasterPipeline(tokenizer, RasterTransformer(raster)).save_pretrained(root / "pipe")
    images = torch.utils.data.Subset(FashionMNIST(ASSETS, "test", 16, 1), range(8))
    write_token_shards(tokenizer, images, root / "tokens", batch_size=8)
    write_manifest(tokenizer, len(images), root / "tokens", 50_000, source="assets:test")
    return root / "pipe", root / "tokens"


def test_a_raster_models_loss_report_names_its_kind_and_says_it_is_not_comparable(raster_model, tmp_path, capsys):
    pipe, tokens = raster_model
    out = tmp_path / "loss.json"
    argv = ["evaluate", "--loss", "--model", str(pipe), "--tokens", str(tokens), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["model_kind"] == "raster next-token" and report["scale_sides"] == [4]
    assert report["token_schedule"] == "one 4x4 map, 16 tokens in raster order"
    assert report["L_last"] == report["L_avg"]  # the numbers are as before: one map, one "scale"
    assert report["model_source"] == "exported pipeline folder"
    assert len(report["warnings"]) == 1 and "not comparable" in report["warnings"][0]
    assert "warning: a raster model's L_last/L_avg is next-token loss" in capsys.readouterr().err


def test_sample_size_warnings_flag_small_n_and_unequal_precision_recall_sets():
    lines = sample_size_warnings(200, 10_000, 64)  # h6's run: FID 7.48 for real images alone, precision skewed
    assert len(lines) == 2
    assert "below 10,000 images FID is largely sample-size bias" in lines[0] and "--baseline" in lines[0]
    assert lines[1].startswith("precision/recall compare 200 samples with 10000 reference images")
    assert sample_size_warnings(10_000, 10_000, 2048) == []  # a standard-sized, equal comparison
    assert len(sample_size_warnings(10_000, 50_000, 2048)) == 1  # sizes 5x apart: precision/recall only


def test_the_cfg_table_prints_kid_with_its_spread():
    row = {"cfg": 1.0, "fid": 10.7, "kid": -2.215, "kid_std": 4.39, "precision": 0.935, "recall": 0.658}
    table = format_class_sweep([row, {**row, "cfg": 3.0}])
    assert "KID ± std" in table.splitlines()[0] and "-2.215 ± 4.4" in table.splitlines()[1]
