"""`train --init-from`: a trained model adapted to the run (class count, regularisation, per-sample cross-attention)."""

import argparse
import dataclasses
import json
import shlex

import pytest
import torch
from PIL import Image
from test_cli import REPO, TINY_DATA, run_command
from training_helpers import read_metrics

from nextscale.cli.train_model import adapted_for_fine_tuning
from nextscale.presets import star_tiny, tiny
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_model import TextScaleTransformer

NO_FLAGS = dict(
    depth=None, embed_dim=None, num_heads=None, shared_adaln=False, drop_path_rate=None, cond_drop_rate=None
)


def fine_tune_args(**given) -> argparse.Namespace:
    return argparse.Namespace(init_from="pretrained", **{"num_classes": None, **NO_FLAGS, **given})


def test_another_class_list_starts_every_class_as_the_pretrained_null_class(capsys):
    torch.manual_seed(0)
    model = ScaleTransformer(tiny()[1])  # 10 classes
    adapted = adapted_for_fine_tuning(model, fine_tune_args(num_classes=3))
    assert adapted.config.num_classes == 3 and "10 -> 3 classes" in capsys.readouterr().out
    table, null_row = adapted.class_embedder.embedding.weight, model.class_embedder.embedding.weight[-1]
    assert table.shape == (4, model.config.embed_dim) and torch.equal(table, null_row.expand(4, -1))
    ours, theirs = adapted.state_dict(), model.state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs if key != "class_embedder.embedding.weight")
    # every class of the adapted model starts as the pretrained model's unconditional prediction
    tokens = torch.randint(0, 64, (1, 21 - 1, 8)).float()
    with torch.no_grad():
        unconditional = model.eval()(torch.tensor([10]), tokens)
        assert torch.equal(adapted.eval()(torch.tensor([2]), tokens), unconditional)


def test_same_class_count_and_no_flags_keep_the_model_itself(capsys):
    model = ScaleTransformer(tiny()[1])
    assert adapted_for_fine_tuning(model, fine_tune_args(num_classes=10)) is model
    assert capsys.readouterr().out == ""


def test_a_converted_star_model_trains_with_per_sample_cross_attention(capsys):
    torch.manual_seed(0)
    official = dataclasses.replace(star_tiny()[1], official_batch0_cross_attention=True)
    model = TextScaleTransformer(official)
    adapted = adapted_for_fine_tuning(model, fine_tune_args(drop_path_rate=0.05))
    assert adapted.config.official_batch0_cross_attention is False and adapted.config.drop_path_rate == 0.05
    out = capsys.readouterr().out
    assert "cross-attention per sample" in out and "drop_path_rate" in out
    assert all(torch.equal(a, b) for a, b in zip(adapted.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("flag", ["--depth 3", "--embed-dim 32", "--num-heads 4"])
def test_shape_flags_are_refused(flag):
    with pytest.raises(ValueError, match=f"--init-from fixes the model's shape; drop {flag.split()[0]}"):
        adapted_for_fine_tuning(
            ScaleTransformer(tiny()[1]), fine_tune_args(**{flag.split()[0][2:].replace("-", "_"): 3})
        )


def test_rope_flags_are_refused_for_class_models_fresh_or_fine_tuned():
    from nextscale.cli.train_model import build_transformer_config
    from nextscale.tokenizer.config import TokenizerConfig

    with pytest.raises(ValueError, match="--rope-theta set a text model's RoPE; a class-conditional model"):
        adapted_for_fine_tuning(ScaleTransformer(tiny()[1]), fine_tune_args(rope_theta=100.0))
    fresh = argparse.Namespace(raster=None, preset=None, depth=2, rope_theta=None, rope_norm=32.0)
    with pytest.raises(ValueError, match="--rope-norm set a text model's RoPE"):
        build_transformer_config(fresh, TokenizerConfig())


def test_fine_tuning_on_a_folder_of_other_classes_records_their_names(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tok, base, tuned = tmp_path / "tok", tmp_path / "base", tmp_path / "tuned"
    assert (
        run_command("train_tokenizer", f"--config configs/tiny_tokenizer.json --run-dir {tok} --steps 2 --no-progress")
        == 0
    )
    common = f"--tokenizer {tok} --steps 2 --batch-size 4 --no-progress --preview-every none --eval-every 100"
    assert run_command("train", f"--preset tiny --data {TINY_DATA} --run-dir {base} {common}") == 0
    for name, shade in (("dark", 40), ("light", 220)):
        (tmp_path / "own" / name).mkdir(parents=True)
        for index in range(4):
            Image.new("L", (16, 16), shade + index).save(tmp_path / "own" / name / f"{index}.png")
    assert run_command("train", f"--init-from {base} --data {tmp_path / 'own'} --run-dir {tuned} {common}") == 0
    run_config = json.loads((tuned / "config.json").read_text())
    assert run_config["transformer"]["num_classes"] == 2 and run_config["class_names"] == ["dark", "light"]
    assert (
        run_command("sample", shlex.join(["--model", str(tuned), "--class", "light", "--out", str(tmp_path / "l.png")]))
        == 0
    )


def test_a_fine_tuning_run_resumes_after_its_starting_model_is_gone(tmp_path, monkeypatch):
    """--init-from is ignored once the run has a checkpoint: a resume neither needs nor reads the starting model,
    and continues exactly as the uninterrupted run; a changed regularisation flag is still another config."""
    monkeypatch.chdir(REPO)
    tok, base = tmp_path / "tok", tmp_path / "base"
    assert run_command("train_tokenizer", f"--config configs/tiny_tokenizer.json --run-dir {tok} --steps 1") == 0
    common = f"--tokenizer {tok} --data {TINY_DATA} --batch-size 4 --no-progress --preview-every none --log-every 1"
    assert run_command("train", f"--preset tiny --run-dir {base} --steps 1 {common}") == 0
    tune = f"--init-from {base} --steps 4 {common}"
    assert run_command("train", f"{tune} --run-dir {tmp_path / 'straight'}") == 0
    assert run_command("train", f"{tune} --run-dir {tmp_path / 'resumed'} --max-steps 2") == 0
    base.rename(tmp_path / "moved")
    with pytest.raises(ValueError, match="different config .*drop_path_rate"):
        run_command("train", f"{tune} --run-dir {tmp_path / 'resumed'} --drop-path-rate 0.3")
    assert run_command("train", f"{tune} --run-dir {tmp_path / 'resumed'}") == 0
    losses = [[r["loss"] for r in read_metrics(tmp_path / run)] for run in ("straight", "resumed")]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
