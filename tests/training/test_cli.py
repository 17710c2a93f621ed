"""The training commands end to end on the tiny run files, and their user errors."""

import argparse
import importlib
import json
import shlex
from pathlib import Path

import pytest
import torch
from training_helpers import read_metrics, tiny_configs

from nextscale.sampling.pipeline import Pipeline
from reference_fixtures import require

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_VQVAE = REPO.parent / "shared" / "reference" / "var_parity" / "vqvae.pth"
TINY_DATA = "fashion-mnist:tests/assets/fashion_mnist"


def run_command(name: str, command_line: str) -> int:
    """Parse ``command_line`` with the command's own parser and run it (what `nextscale NAME ...` does)."""
    module = importlib.import_module(f"nextscale.cli.{name}")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(shlex.split(command_line)))


def test_train_tokenize_train_export_chain(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the run files name the bundled test assets relative to the repository
    tok, var, tokens = tmp_path / "tok", tmp_path / "var", tmp_path / "tokens"
    tiny_tok = f"--config configs/tiny_tokenizer.json --run-dir {tok} --steps 8 --disc-start 4 --no-progress"
    assert run_command("train_tokenizer", tiny_tok) == 0
    assert read_metrics(tok)[-1]["step"] == 8
    assert run_command("tokenize", f"--tokenizer {tok} --data {TINY_DATA} --out {tokens} --no-progress") == 0
    manifest = json.loads((tokens / "manifest.json").read_text())
    assert manifest["count"] == 200 and manifest["total_tokens"] == 21 and manifest["dtype"] == "int16"
    train = f"--config configs/tiny_transformer.json --tokenizer {tok} --tokens {tokens} --run-dir {var} --steps 6"
    assert run_command("train", f"{train} --max-steps 4 --log-every 1 --no-progress") == 0
    assert read_metrics(var)[-1]["step"] == 4
    assert run_command("train", f"{train} --log-every 1 --no-progress") == 0  # the same command resumes
    assert [r["step"] for r in read_metrics(var)] == [1, 2, 3, 4, 5, 6]
    (tmp_path / "pipe" / "text_encoder").mkdir(parents=True)  # an older text pipeline's component, and a note
    (tmp_path / "pipe" / "NOTES.md").write_text("mine")
    assert run_command("export", f"--run {var} --out {tmp_path / 'pipe'}") == 0
    out = Pipeline.from_pretrained(tmp_path / "pipe")(class_labels=[1, 2], seed=0, output_type="pt")
    assert out.images.shape == (2, 1, 16, 16) and out.tokens.dtype == torch.int64
    # the export replaced the pipeline whole: no old component beside it, the user's file kept, no staging left
    assert sorted(path.name for path in (tmp_path / "pipe").iterdir()) == [
        "NOTES.md",
        "pipeline.json",
        "tokenizer",
        "transformer",
    ]
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
    # `--model RUN_DIR` samples the run's EMA weights without exporting: the exported folder's tokens exactly
    for model in (var, tmp_path / "pipe"):
        argv = f"--model {model} --class 1 2 --seed 3 --top-k 5 --save-tokens {tmp_path / model.name}.safetensors"
        assert run_command("sample", f"{argv} --out {tmp_path / model.name}.png") == 0
    from safetensors.torch import load_file

    tokens_of = {name: load_file(tmp_path / f"{name}.safetensors")["tokens"] for name in ("var", "pipe")}
    assert torch.equal(tokens_of["var"], tokens_of["pipe"])


def test_missing_data_folder_is_a_clear_error(tmp_path):
    common = f"--preset tiny --run-dir {tmp_path / 'run'} --steps 1"
    with pytest.raises(FileNotFoundError, match="data folder .*missing-images does not exist"):
        run_command("train_tokenizer", f"{common} --data {tmp_path / 'missing-images'}")
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST folder"):
        run_command("train_tokenizer", f"{common} --data fashion-mnist:{tmp_path / 'nothing'}")


def test_run_file_errors_and_required_flags(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"args": {"learning-rate": 0.1}}))
    with pytest.raises(ValueError, match="unknown flag 'learning-rate'"):
        run_command("train_tokenizer", f"--config {bad} --run-dir {tmp_path / 'run'}")
    with pytest.raises(ValueError, match="--steps N or --epochs E"):
        run_command("train_tokenizer", f"--preset tiny --in-channels 1 --data {TINY_DATA} --run-dir {tmp_path / 'r'}")
    with pytest.raises(ValueError, match="--run-dir and --tokenizer are required"):
        run_command("train", "--data fashion-mnist")


@pytest.mark.slow  # 256 px images through a 4.6 M-parameter VQVAE: tens of seconds on a CPU
def test_fine_tune_from_official_tokenizer(tmp_path, monkeypatch):
    require(OFFICIAL_VQVAE)
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "finetune"
    common = f"--init-from {OFFICIAL_VQVAE} --data tests/assets/image_folder --steps 1 --batch-size 2"
    assert run_command("train_tokenizer", f"{common} --run-dir {run_dir} --preview-every none --no-progress") == 0
    assert "code_usage/scale9" in read_metrics(run_dir)[-1]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tokenizer"]["base_channels"] == 32 and config["tokenizer"]["vocab_size"] == 4096
    with pytest.raises(ValueError, match="--init-from fixes the tokenizer's shape"):
        run_command("train_tokenizer", f"{common} --vocab-size 64 --run-dir {tmp_path / 'other'}")


def test_raster_baseline_through_the_cli(tmp_path, monkeypatch):
    # tokenize on the one-map schedule, train --raster with the tiny preset's blocks, export, sample
    monkeypatch.chdir(REPO)
    tok, run, tokens = tmp_path / "tok", tmp_path / "raster", tmp_path / "tokens"
    tiny_tok = f"--config configs/tiny_tokenizer.json --run-dir {tok} --steps 2 --no-progress"
    assert run_command("train_tokenizer", tiny_tok) == 0
    tokenize = f"--tokenizer {tok} --data {TINY_DATA} --scale-sides 4 --out {tokens} --no-progress"
    assert run_command("tokenize", tokenize) == 0
    assert json.loads((tokens / "manifest.json").read_text())["total_tokens"] == 16
    train = f"--config configs/tiny_transformer.json --raster --tokenizer {tok} --tokens {tokens} --run-dir {run}"
    held_out = f"--eval-tokens {tokens} --eval-every 4 --eval-samples 100"
    assert run_command("train", f"{train} {held_out} --steps 4 --no-progress") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model_class"] == "RasterTransformer" and config["transformer"]["side"] == 4
    assert run_command("export", f"--run {run} --out {tmp_path / 'pipe'}") == 0
    pipe = Pipeline.from_pretrained(tmp_path / "pipe")
    assert type(pipe).__name__ == "RasterPipeline"
    assert pipe(class_labels=[1], seed=0, output_type="pt").images.shape == (1, 1, 16, 16)

    # held-out next-token loss of the exported raw weights = the trainer's last eval line
    assert run_command("export", f"--run {run} --raw --out {tmp_path / 'raw'}") == 0
    report = tmp_path / "loss.json"
    assert run_command("evaluate", f"--model {tmp_path / 'raw'} --loss --tokens {tokens} --num 100 --out {report}") == 0
    measured = json.loads(report.read_text())
    logged = read_metrics(run, split="eval")[-1]
    assert measured["scale_sides"] == [4] and measured["L_avg"] == measured["L_last"]
    assert measured["L_avg"] == pytest.approx(logged["loss"], rel=1e-5)
    assert measured["token_error"] == pytest.approx([logged["token_error/scale0"]], rel=1e-5)

    # next-scale tokens of the same tokenizer: the schedule is named, not "a different tokenizer"
    var_tokens = tmp_path / "var-tokens"
    assert run_command("tokenize", f"--tokenizer {tok} --data {TINY_DATA} --out {var_tokens} --no-progress") == 0
    with pytest.raises(
        ValueError,
        match=r"have scales \(1, 2, 4\) \(21 tokens\), but this model reads scales "
        r"\(4,\) \(16 tokens\); tokenize again with `nextscale tokenize --scale-sides 4`",
    ):
        run_command("evaluate", f"--model {tmp_path / 'raw'} --loss --tokens {var_tokens}")
    with pytest.raises(ValueError, match=r"but this tokenizer reads scales \(4,\)"):
        run_command("train", f"{train.replace(str(tokens), str(var_tokens))} --steps 1 --run-dir {tmp_path / 'x'}")
    # one-map tokens without --raster: the flag is named (it said "the first scale must be 1x1")
    with pytest.raises(ValueError, match=r"holds one 4x4 token map per image .*: add --raster"):
        run_command("train", f"{train.replace(' --raster', '')} --steps 1 --run-dir {tmp_path / 'y'}")
    # one map of another side (8 px images): the raster baseline adopts it, as next-scale runs adopt a schedule
    small = tmp_path / "tokens-2"
    assert (
        run_command("tokenize", f"--tokenizer {tok} --data {TINY_DATA} --scale-sides 2 --out {small} --no-progress")
        == 0
    )
    two = f"{train.replace(str(tokens), str(small))} --steps 1 --run-dir {tmp_path / 'two'}"
    assert run_command("train", f"{two} --no-progress") == 0
    assert json.loads((tmp_path / "two" / "config.json").read_text())["transformer"]["side"] == 2


def test_train_takes_the_schedule_of_tokens_made_with_scale_sides(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(REPO)
    from nextscale.pretrained import save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    torch.manual_seed(0)
    save_component(MultiScaleVQVAE(tiny_configs()[0]), tmp_path / "tok")  # its own scales: 1, 2, 4
    tokens = tmp_path / "tokens"
    flags = f"--tokenizer {tmp_path / 'tok'} --data {TINY_DATA} --scale-sides 1,4 --out {tokens} --no-progress"
    assert run_command("tokenize", flags) == 0
    run = tmp_path / "run"
    train = f"--tokenizer {tmp_path / 'tok'} --tokens {tokens} --preset tiny --steps 1 --batch-size 8 --run-dir {run}"
    with caplog.at_level("INFO"):
        assert run_command("train", f"{train} --no-progress") == 0
    assert json.loads((run / "config.json").read_text())["transformer"]["scale_sides"] == [1, 4]
    assert f"scales 1,4 (17 tokens), from the token folder {tokens}" in caplog.text


def test_progressive_training_takes_vars_lr_schedule_unless_one_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    from nextscale.pretrained import save_component
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE

    torch.manual_seed(0)
    save_component(MultiScaleVQVAE(tiny_configs()[0]), tmp_path / "tok")
    (tmp_path / "run.json").write_text(json.dumps({"args": {"lr-schedule": "cos"}}))
    base = f"--tokenizer {tmp_path / 'tok'} --data {TINY_DATA} --preset tiny --steps 1 --batch-size 8 --no-progress"
    for name, flags, expected in (
        ("default", "--progressive 0.5 --progressive-first-stage 1", "lin0.5"),
        ("typed", "--progressive 0.5 --progressive-first-stage 1 --lr-schedule lin0", "lin0"),
        ("file", f"--progressive 0.5 --progressive-first-stage 1 --config {tmp_path / 'run.json'}", "cos"),
        ("off", "", "lin0"),
    ):
        assert run_command("train", f"{base} {flags} --run-dir {tmp_path / name}") == 0
        assert json.loads((tmp_path / name / "config.json").read_text())["train"]["lr_schedule"] == expected, name


def test_held_out_data_with_another_class_list_is_refused():
    from types import SimpleNamespace

    from nextscale.cli.train import check_same_classes

    train = SimpleNamespace(classes=["a", "b", "c"])
    check_same_classes(train, SimpleNamespace(classes=["a", "b", "c"]))
    check_same_classes(train, SimpleNamespace(classes=None))  # nothing recorded: nothing to compare
    check_same_classes(train, None)
    with pytest.raises(ValueError, match=r"classes only in one of them: \['b'\]"):
        check_same_classes(train, SimpleNamespace(classes=["a", "c"]))
    with pytest.raises(ValueError, match="the same classes in another order"):
        check_same_classes(train, SimpleNamespace(classes=["c", "b", "a"]))
