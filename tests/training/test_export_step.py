"""`export --step N` (or `--run RUN/checkpoints/step-N.pt`) writes an earlier checkpoint the run kept: the step a
held-out warning names, rather than only the newest."""

import pytest
from safetensors.torch import load_file
from test_cli import REPO, run_command

from nextscale.cli import main
from nextscale.training.checkpoint import checkpoint_path, load_checkpoint


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export-step") / "tok"
    data = REPO / "tests/assets/fashion_mnist"
    command = f"--config {REPO / 'configs/tiny_tokenizer.json'} --data fashion-mnist:{data} --run-dir {run}"
    options = "--steps 2 --checkpoint-every 1 --no-progress --preview-every none --eval-every none"
    assert run_command("train_tokenizer", f"{command} {options}") == 0
    return run


def exported_weights(folder):
    return load_file(folder / "model.safetensors")


def test_a_step_or_a_checkpoint_file_exports_that_steps_weights(two_step_run, tmp_path, capsys):
    first = load_checkpoint(checkpoint_path(two_step_run, 1))["ema"]["module"]
    assert run_command("export", f"--run {two_step_run} --step 1 --out {tmp_path / 'one'}") == 0
    assert f"weights of {two_step_run} (step 1) to" in capsys.readouterr().out
    weights = exported_weights(tmp_path / "one")
    assert all(weights[name].equal(first[name]) for name in weights)
    assert run_command("export", f"--run {checkpoint_path(two_step_run, 1)} --out {tmp_path / 'file'}") == 0
    assert exported_weights(tmp_path / "file").keys() == weights.keys()
    assert all(exported_weights(tmp_path / "file")[name].equal(weights[name]) for name in weights)

    assert run_command("export", f"--run {two_step_run} --out {tmp_path / 'newest'}") == 0
    newest = exported_weights(tmp_path / "newest")
    assert any(not newest[name].equal(weights[name]) for name in weights)  # step 2 trained on


def test_a_step_the_run_does_not_keep_is_refused_naming_the_kept_ones(two_step_run, tmp_path, capsys):
    assert main(f"export --run {two_step_run} --step 5 --out {tmp_path / 'x'}".split()) == 2
    assert "keeps no checkpoint of step 5 (steps kept: 1, 2;" in capsys.readouterr().err
    assert main(f"export --run {checkpoint_path(two_step_run, 1)} --step 2 --out {tmp_path / 'x'}".split()) == 2
    assert "is the checkpoint of step 1, not --step 2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
