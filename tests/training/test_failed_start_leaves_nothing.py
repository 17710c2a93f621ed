"""A training command that fails or is interrupted before its first checkpoint removes the run folder it created
(and only that), and a Ctrl-C that saved nothing says what the same command does next."""

import pytest
from test_cli import REPO, run_command

from nextscale.cli import main as cli_main
from nextscale.training.checkpoint import latest_checkpoint
from nextscale.training.run_dir import remove_unstarted_run
from nextscale.training.tokenizer_trainer import TokenizerTrainer

TINY = "--config configs/tiny_tokenizer.json --disc-start none --eval-every none --preview-every none --no-progress"


def _second_ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt  # as the second Ctrl-C raises it in the middle of a step


def test_bad_data_found_after_the_lock_removes_the_folders_the_command_created(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    created, run_dir = tmp_path / "runs", tmp_path / "runs" / "tok"
    with pytest.raises(ValueError, match="fewer than one batch of 500"):
        run_command("train_tokenizer", f"{TINY} --run-dir {run_dir} --steps 2 --batch-size 500")
    assert not created.exists()  # runs/ too: this command made it
    assert tmp_path.is_dir()


def test_a_folder_that_existed_before_keeps_what_was_in_it(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "tok"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="fewer than one batch of 500"):
        run_command("train_tokenizer", f"{TINY} --run-dir {run_dir} --steps 2 --batch-size 500")
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "tok"
    monkeypatch.setattr(TokenizerTrainer, "_optimizer_step", _second_ctrl_c)
    assert cli_main(["train-tokenizer", *f"{TINY} --run-dir {run_dir} --steps 2".split()]) == 130
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"nextscale train-tokenizer: interrupted before the first checkpoint, nothing was saved (removed {run_dir}, "
        "which it had created); re-run the same command to start the run"
    )
    assert not run_dir.exists()


def test_ctrl_c_after_a_checkpoint_names_the_step_the_same_command_resumes_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    command = f"{TINY} --run-dir {tmp_path / 'tok'} --steps 3"
    assert run_command("train_tokenizer", f"{command} --max-steps 1") == 0
    saved = latest_checkpoint(tmp_path / "tok")
    monkeypatch.setattr(TokenizerTrainer, "_optimizer_step", _second_ctrl_c)
    assert cli_main(["train-tokenizer", *command.split()]) == 130
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"nextscale train-tokenizer: interrupted before saving a checkpoint (the newest is {saved}); re-run the same "
        "command to resume from step 1"
    )
    assert latest_checkpoint(tmp_path / "tok") == saved


def test_a_folder_with_anything_in_its_checkpoints_is_never_removed(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-00000004.pt.tmp").write_bytes(b"partial")
    assert not remove_unstarted_run(run_dir, run_dir)
    assert (run_dir / "checkpoints" / "step-00000004.pt.tmp").is_file()
    # nor anything outside the folders the command created
    assert not remove_unstarted_run(tmp_path / "other", tmp_path / "unrelated")


def test_a_text_model_given_class_tokens_names_the_fix_and_leaves_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tok, tokens, run_dir = tmp_path / "tok", tmp_path / "tokens", tmp_path / "run"
    fashion = "fashion-mnist:tests/assets/fashion_mnist"
    assert run_command("train_tokenizer", f"{TINY} --data {fashion} --run-dir {tok} --steps 1") == 0
    assert run_command("tokenize", f"--tokenizer {tok} --data {fashion} --out {tokens} --no-progress") == 0
    text_model = f"--config configs/tiny_text_transformer.json --tokenizer {tok} --no-progress --steps 1"
    with pytest.raises(
        ValueError,
        match=r"holds class labels: tokenize captioned images with `nextscale tokenize "
        r"--data captions:PATH \.\.\.`.*or leave out --text-encoder to train a class model",
    ):
        run_command("train", f"{text_model} --tokens {tokens} --run-dir {run_dir}")
    assert not run_dir.exists()
