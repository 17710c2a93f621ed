"""Run paths and re-runs, told apart where every caller meets them (s22): a run's checkpoint file given to the model
loaders, a resume whose step total changed along with other settings, and a re-run of a finished run."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_cli import REPO, run_command

from nextscale.training import data_specs
from nextscale.training.export import load_tokenizer, load_transformer_weights
from nextscale.training.options import fit_and_report
from nextscale.training.run_dir import refuse_another_config
from tiny_folders import class_folder


def fake_run(root: Path, config: dict, step: int = 30) -> Path:
    """A run folder as far as the checks look: config.json and one checkpoint file (its content is never read)."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    (root / "checkpoints" / f"step-{step:08d}.pt").write_bytes(b"not loaded")
    return root


@pytest.mark.parametrize(("kind", "load"), [("tokenizer", load_tokenizer), ("transformer", load_transformer_weights)])
def test_the_loaders_name_the_run_of_a_checkpoint_file(tmp_path, kind, load):
    """Python callers and `nextscale scaling --tokenizer` reach the loaders without the CLI's own check: before,
    a tokenizer checkpoint was read as an official VAR .pth and refused for its state dict's extra keys."""
    run = fake_run(tmp_path / "runs" / "mine", {"kind": kind})
    checkpoint = run / "checkpoints" / "step-00000030.pt"
    with pytest.raises(ValueError) as caught:
        load(str(checkpoint))
    message = str(caught.value)
    assert message.startswith(f"{checkpoint} is a checkpoint of the training run {run}: pass the run folder ({run},")
    assert f"`nextscale export --run {run} --step 30 --out DIR`" in message and "\n" not in message
    assert "--tokenizer" not in message and "--init-from" not in message  # no flag was given


def test_a_checkpoints_folder_of_no_run_is_left_to_the_loader(tmp_path):
    """Only a file of a training run is refused as one: elsewhere a step-N.pt file is whatever the loader makes
    of it (here: no tokenizer file at all)."""
    folder = tmp_path / "mine" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "step-00000030.pt").write_bytes(b"not loaded")
    with pytest.raises(ValueError) as caught:
        load_tokenizer(folder / "step-00000030.pt")
    assert "is a checkpoint of the training run" not in str(caught.value)


TRAIN = {"total_steps": 30, "lr": 0.002}


def refusal(run_dir: Path, saved: dict, current: dict, reached: int) -> str:
    run = fake_run(run_dir, saved, step=reached)
    with pytest.raises(ValueError) as caught:
        refuse_another_config(run, saved, current, current["train"]["total_steps"])
    return str(caught.value)


def test_another_total_alone_keeps_its_schedule_advice(tmp_path):
    saved = {"kind": "tokenizer", "data": "a", "train": TRAIN}
    current = {**saved, "train": {**TRAIN, "total_steps": 60}}
    assert "resume it with --steps 30" in refusal(tmp_path / "half", saved, current, 10)
    finished = refusal(tmp_path / "done", saved, current, 30)
    assert "cannot run on to 60 steps here" in finished and f"--init-from {tmp_path / 'done'}" in finished


def test_other_data_with_another_total_leads_with_the_data(tmp_path):
    """Another --data changes an --epochs run's total too: the refusal named the schedule alone before."""
    saved = {"kind": "tokenizer", "data": "a", "train": TRAIN}
    current = {**saved, "data": "b", "train": {**TRAIN, "total_steps": 60, "lr": 0.001}}
    half = refusal(tmp_path / "half", saved, current, 10)
    listed = "(data: 'a' in the run, 'b' now; train.lr: 0.002 in the run, 0.001 now; train.total_steps: 30 in"
    assert listed in half
    assert "to resume it, give its own settings, --steps 30 (or the original --epochs) among them" in half
    assert "learning-rate schedule" not in half
    done = refusal(tmp_path / "done", saved, current, 30)
    assert done.endswith(f"train in a new --run-dir (add --init-from {tmp_path / 'done'} to start from its weights)")


@pytest.mark.parametrize(
    ("changed", "first"),
    [
        ({"transformer": {"depth": 4}}, "transformer.depth: 2 in the run, 4 now"),
        ({"kind": "tokenizer"}, "kind: 'transformer' in the run, 'tokenizer' now"),
    ],
)
def test_another_model_with_another_total_gets_no_init_from_advice(tmp_path, changed, first):
    """The run's weights do not fit another model: --init-from would only fail next."""
    saved = {"kind": "transformer", "data": "a", "transformer": {"depth": 2}, "train": TRAIN}
    current = {**saved, **changed, "data": "b", "train": {**TRAIN, "total_steps": 60}}
    message = refusal(tmp_path, saved, current, 30)
    assert f"different config ({first}; " in message and "--init-from" not in message
    assert message.endswith("the run finished its 30-step schedule; train in a new --run-dir")


def test_a_long_list_of_differences_stays_readable(tmp_path):
    """A section present on one side only (another kind of run) was shown whole: 1,500 characters."""
    saved = {"kind": "tokenizer", "losses": {f"weight_{i}": 0.5 for i in range(40)}, "train": {**TRAIN, "p": 1}}
    current = {"kind": "transformer", "objective": {f"o{i}": i for i in range(40)}, "train": {**TRAIN, "q": 1}}
    current["train"] |= {f"lr_{i}": i for i in range(3)}  # 8 differences in all: kind, losses, objective, train.*
    message = refusal(tmp_path, saved, current, 10)
    assert message.startswith(f"run directory {tmp_path} was made by a different config (kind: 'tokenizer' in")
    assert message.count("...") == 2 and "; and 2 more)" in message and len(message) < 700


def stub_trainer(trains: bool, error: Exception | None = None):
    """What ``fit_and_report`` asks of a trainer: ``fit`` (the last logged metrics, none when it trained nothing),
    then the step and total for its summary line."""
    trainer = SimpleNamespace(step=30, run_dir="runs/x", dist=SimpleNamespace(is_main=True))
    trainer.config = SimpleNamespace(total_steps=60 if trains else 30)

    def fit(max_steps):
        if trains:
            trainer.step += 1
        if error is not None:
            raise error
        return {"loss": 1.0} if trains else {}

    trainer.fit = fit
    return trainer


@pytest.mark.parametrize(
    ("trains", "error", "reported"),
    [(False, None, False), (True, None, True), (False, RuntimeError("stopped"), True)],
)
def test_the_data_summary_follows_only_a_run_that_began(monkeypatch, capsys, trains, error, reported):
    calls = []
    monkeypatch.setattr(data_specs, "report_skipped_images", calls.append)
    trainer = stub_trainer(trains, error)
    if error is None:
        fit_and_report(trainer, None, ["datasets"], "tokenizer")
    else:
        with pytest.raises(RuntimeError):
            fit_and_report(trainer, None, ["datasets"], "tokenizer")
    assert (calls == [["datasets"]]) is reported
    assert ("already finished, nothing to train" in capsys.readouterr().out) is (not trains and error is None)


def test_a_finished_run_run_again_says_nothing_of_its_data_after_nothing_to_train(tmp_path, monkeypatch, caplog):
    """The first-hour finding: "already finished, nothing to train", then "skipped 1 of 5 image files"."""
    monkeypatch.chdir(REPO)
    data = class_folder(tmp_path / "data")
    (data / "a" / "broken.png").write_bytes(b"no image")
    command = (
        f"--config configs/tiny_tokenizer.json --data {data} --run-dir {tmp_path / 'run'} --steps 1 --batch-size 2 "
        "--disc-start none --eval-every none --preview-every none --no-progress"
    )
    with caplog.at_level(logging.WARNING):
        assert run_command("train_tokenizer", command) == 0
        assert "skipped 1 of 5 image files" in caplog.text
        caplog.clear()
        assert run_command("train_tokenizer", command) == 0
    assert "broken.png" in caplog.text  # still named when the data is checked
    assert "skipped 1 of 5" not in caplog.text
