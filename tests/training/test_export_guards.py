"""`export` and the run loaders refuse what would damage a run, and read `bundled:` names."""

import pytest
from test_cli import REPO, run_command

from nextscale.training.export import export_run, load_tokenizer, load_transformer_weights, read_run_config


@pytest.fixture(scope="module")
def tokenizer_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("export-guards") / "tok"
    command = (
        f"--config {REPO / 'configs/tiny_tokenizer.json'} --data fashion-mnist:{REPO / 'tests/assets/fashion_mnist'}"
    )
    assert (
        run_command("train_tokenizer", f"{command} --run-dir {run} --steps 1 --no-progress --preview-every none") == 0
    )
    return run


@pytest.mark.parametrize("inside", ["", "checkpoints"])
def test_export_into_the_run_itself_is_refused_and_leaves_it_intact(tokenizer_run, inside):
    before = (tokenizer_run / "config.json").read_text()
    with pytest.raises(ValueError, match="is the run .* or one of its folders; export elsewhere"):
        export_run(tokenizer_run, tokenizer_run / inside)
    assert (tokenizer_run / "config.json").read_text() == before and read_run_config(tokenizer_run)["kind"]


def test_export_over_another_run_is_refused(tokenizer_run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((tokenizer_run / "config.json").read_text())
    with pytest.raises(ValueError, match="is a training run directory; export to another folder"):
        export_run(tokenizer_run, other)


def test_an_unreadable_run_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text("")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'config.json'} is not valid JSON"):
        read_run_config(tmp_path)


def test_bundled_names_serve_as_tokenizer_and_starting_weights():
    assert load_tokenizer("bundled:fashion-mnist").config.vocab_size == 512
    assert load_transformer_weights("bundled:fashion-mnist").config.num_classes == 10


def test_a_damaged_tokenizer_copy_is_written_again_when_the_run_resumes(tokenizer_run, tmp_path, capsys):
    run = tmp_path / "var"
    train = f"--preset tiny --tokenizer {tokenizer_run} --data fashion-mnist:{REPO / 'tests/assets/fashion_mnist'}"
    train += f" --run-dir {run} --batch-size 4 --no-progress --preview-every none --eval-every 100"
    assert run_command("train", f"{train} --steps 2 --max-steps 1") == 0
    (run / "tokenizer" / "model.safetensors").write_bytes(b"")  # a bad copy, a full disk: the file is damaged
    assert run_command("train", f"{train} --steps 2") == 0
    exported = export_run(run, tmp_path / "pipe")
    assert load_tokenizer(exported).state_dict().keys() == load_tokenizer(tokenizer_run).state_dict().keys()


def test_export_of_a_run_without_ema_says_it_wrote_the_raw_weights(tmp_path, capsys):
    run = tmp_path / "tok"
    data = REPO / "tests/assets/fashion_mnist"
    command = f"--config {REPO / 'configs/tiny_tokenizer.json'} --data fashion-mnist:{data}"
    options = "--steps 1 --no-progress --preview-every none --eval-every none --disc-start none --ema-decay none"
    assert run_command("train_tokenizer", f"{command} --run-dir {run} {options}") == 0
    capsys.readouterr()
    assert run_command("export", f"--run {run} --out {tmp_path / 'out'}") == 0
    assert "exported raw (the run keeps no EMA: --ema-decay none) weights" in capsys.readouterr().out


def test_a_tokenizer_export_over_a_pipeline_folder_is_refused(tokenizer_run, tmp_path):
    """The folder's pipeline.json would win over the exported component: `load_tokenizer(out)` would silently
    return the old pipeline's tokenizer."""
    out = tmp_path / "pipe"
    out.mkdir()
    (out / "pipeline.json").write_text('{"_class_name": "Pipeline", "tokenizer": "tokenizer"}')
    with pytest.raises(ValueError, match="holds a pipeline \\(pipeline.json\\); export the tokenizer to another"):
        export_run(tokenizer_run, out)
    assert sorted(path.name for path in out.iterdir()) == ["pipeline.json"]


@pytest.mark.parametrize("layout", ["demo-train", "run-inside-entry"])
def test_a_pipeline_export_over_the_folder_of_training_runs_is_refused_and_deletes_nothing(
    tokenizer_run, tmp_path, layout
):
    """A pipeline export replaces out/tokenizer and out/transformer whole: `export --run runs/demo/transformer
    --out runs/demo` (the layout of `demo --train`) deleted both training runs, checkpoints and all."""
    import shutil

    runs = tmp_path / "runs"
    run = runs / "transformer" if layout == "demo-train" else runs / "transformer" / "var"
    shutil.copytree(tokenizer_run, runs / "tokenizer")
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"kind": "transformer"}')  # all the guard reads of the run
    if layout == "run-inside-entry":
        shutil.rmtree(runs / "tokenizer")
    before = sorted(path.relative_to(runs) for path in runs.rglob("*"))
    with pytest.raises(ValueError, match="holds the training run .*, which the pipeline's .* folder would replace"):
        run_command("export", f"--run {run} --out {runs}")
    assert sorted(path.relative_to(runs) for path in runs.rglob("*")) == before


@pytest.mark.parametrize("inside", ["tokenizer", "checkpoints/old"])
def test_an_export_into_the_folders_of_another_run_is_refused(tokenizer_run, tmp_path, inside):
    """An export over another transformer run's tokenizer copy replaced it silently: that run then exported and
    sampled with a tokenizer it was not trained with."""
    other = tmp_path / "var"
    other.mkdir()
    (other / "config.json").write_text('{"kind": "transformer"}')
    (other / inside).mkdir(parents=True)
    with pytest.raises(ValueError, match=f"is in the {inside.split('/')[0]}/ folder of the run .*; export elsewhere"):
        export_run(tokenizer_run, other / inside)
    assert not any((other / inside).iterdir())
