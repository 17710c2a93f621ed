"""Which weights an `evaluate` report names: a run directory's are the checkpoint loading took (an older one when the
newest fails verification), and an exported pipeline folder's are those its export recorded in
transformer/export.json (folders exported before that file existed still load, and say only how export chooses)."""

import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.pretrained import atomic_write_text, config_to_dict, save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.checkpoint import checkpoint_path, save_checkpoint
from nextscale.training.transformer_trainer import TOKENIZER_DIR
from nextscale.transformer.model import ScaleTransformer

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    """(a tiny transformer run whose newest checkpoint, step 6, fails its checksum while step 4 is good; held-out
    tokens of 8 test images made with its tokenizer)."""
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.token_manifest import write_manifest
    from nextscale.data.token_shards import write_token_shards

    root = tmp_path_factory.mktemp("broken-run")
    run = root / "run"
    torch.manual_seed(0)
    tokenizer_config, transformer_config = tiny()
    tokenizer = MultiScaleVQVAE(dataclasses.replace(tokenizer_config, in_channels=1)).eval()
    save_component(tokenizer, run / TOKENIZER_DIR)
    run_config = {"kind": "transformer", "transformer": config_to_dict(transformer_config)}
    atomic_write_text(run / "config.json", json.dumps(run_config))
    for step in (4, 6):
        weights = ScaleTransformer(transformer_config).state_dict()
        save_checkpoint(checkpoint_path(run, step), {"step": step, "models": {"model": weights}, "ema": None})
    # step 6 is overwritten after its checksum record was written: it still opens, but fails verification
    weights = ScaleTransformer(transformer_config).state_dict()
    torch.save({"step": 6, "models": {"model": weights}, "ema": None, "extra": 1}, checkpoint_path(run, 6))
    images = torch.utils.data.Subset(FashionMNIST(ASSETS, "test", 16, 1), range(8))
    write_token_shards(tokenizer, images, root / "tokens", batch_size=8)
    write_manifest(tokenizer, len(images), root / "tokens", 50_000, source="assets:test")
    return run, root / "tokens"


def evaluate_loss(model: Path, tokens: Path, out: Path) -> dict:
    argv = ["evaluate", "--loss", "--model", str(model), "--tokens", str(tokens), "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_a_runs_report_names_the_older_checkpoint_loaded_when_the_newest_fails_verification(broken_run, tmp_path):
    run, tokens = broken_run
    report = evaluate_loss(run, tokens, tmp_path / "report.json")
    assert report["model_source"] == "training run"
    assert (report["checkpoint"], report["checkpoint_step"], report["weights"]) == (
        "checkpoints/step-00000004.pt",
        4,
        "raw",
    )


@pytest.fixture(scope="module")
def exported(broken_run, tmp_path_factory):
    """The run exported with `nextscale export` (its newest good checkpoint: step 4), and what export printed."""
    run, _ = broken_run
    out = tmp_path_factory.mktemp("exported") / "pipe"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_an_exported_folder_records_its_step_and_weights_and_evaluate_reports_them(broken_run, exported, tmp_path):
    (run, tokens), (pipe, printed) = broken_run, exported
    assert f"exported raw (the run keeps no EMA: --ema-decay none) weights of {run} (step 4) to" in printed
    record = json.loads((pipe / "transformer" / "export.json").read_text())
    assert record == {"checkpoint": "checkpoints/step-00000004.pt", "checkpoint_step": 4, "weights": "raw"}
    report = evaluate_loss(pipe, tokens, tmp_path / "report.json")
    assert report["model_source"] == "exported pipeline folder"
    assert (report["checkpoint"], report["checkpoint_step"], report["weights"]) == (record["checkpoint"], 4, "raw")


def test_a_folder_exported_without_a_record_still_loads_and_reports_no_step(broken_run, exported, tmp_path):
    old = shutil.copytree(exported[0], tmp_path / "pipe")
    (old / "transformer" / "export.json").unlink()  # as exported before the record existed
    report = evaluate_loss(old, broken_run[1], tmp_path / "report.json")
    assert report["model_source"] == "exported pipeline folder" and "checkpoint_step" not in report
    assert report["weights"].startswith("as exported")


def test_a_damaged_export_record_is_one_line_naming_the_file(broken_run, exported, tmp_path, capsys):
    damaged = shutil.copytree(exported[0], tmp_path / "pipe")
    (damaged / "transformer" / "export.json").write_text('{"checkpoint_step": "four"}')
    argv = ["evaluate", "--loss", "--model", str(damaged), "--tokens", str(broken_run[1]), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "export.json is not an export record" in err[0] and "export the run again" in err[0]


def test_a_tokenizer_export_records_its_step_beside_the_component(tmp_path):
    from nextscale.training.export import export_run, read_export_record

    torch.manual_seed(0)
    tokenizer_config, _ = tiny()
    run = tmp_path / "tok"
    atomic_write_text(
        run / "config.json", json.dumps({"kind": "tokenizer", "tokenizer": config_to_dict(tokenizer_config)})
    )
    weights = MultiScaleVQVAE(tokenizer_config).state_dict()
    save_checkpoint(checkpoint_path(run, 3), {"step": 3, "models": {"model": weights}, "ema": {"module": weights}})
    export_run(run, tmp_path / "out")
    assert read_export_record(tmp_path / "out").entries() == {
        "checkpoint": "checkpoints/step-00000003.pt",
        "checkpoint_step": 3,
        "weights": "ema",
    }
