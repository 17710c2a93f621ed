"""Small CLI fixes from two first-hour user walkthroughs (s18): flags, defaults and the wording of messages."""

from pathlib import Path

import pytest
import torch

from nextscale.cli import main
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from tiny_models import gray_32px_pipeline, tiny_text_config

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


@pytest.fixture(scope="module")
def gray_32px_model(tmp_path_factory):
    """A random 32 px, 10-class gray pipeline (scales 1, 2, 4, 8): the size the bundled classifier features read."""
    return gray_32px_pipeline(tmp_path_factory.mktemp("gray") / "pipe")


def record_bars(monkeypatch) -> list:
    """Replace the evaluation modules' tqdm with one that records (desc, disabled) of every bar it makes."""
    from nextscale.evaluation import features, generate, held_out

    seen = []
    for module in (features, generate, held_out):

        def make(*args, _real=module.tqdm, **kwargs):
            seen.append((kwargs.get("desc"), kwargs.get("disable", False)))
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "tqdm", make)
    return seen


def test_evaluate_no_progress_turns_off_every_bar(gray_32px_model, tmp_path, monkeypatch):
    seen = record_bars(monkeypatch)
    reference = ["--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier"]
    argv = ["evaluate", "--model", str(gray_32px_model), "--num", "4", "--batch-size", "4", *reference]
    assert main([*argv, "--no-progress"]) == 0
    shown = {desc for desc, disabled in seen if not disabled}
    assert {desc for desc, _ in seen} >= {"features", "sampling"}
    assert not shown, f"bars shown despite --no-progress: {shown}"


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A random 16 px text pipeline with the bundled MiniLM encoder and no recommended settings."""
    from nextscale.presets import tiny
    from nextscale.sampling.text_pipeline import TextPipeline
    from nextscale.text import load_default_text_encoder
    from nextscale.transformer.text_model import TextScaleTransformer

    torch.manual_seed(0)
    encoder = load_default_text_encoder()
    tokenizer_config = tiny()[0]
    config = tiny_text_config(encoder.width, tokenizer_config, embed_dim=64)
    path = tmp_path_factory.mktemp("text") / "pipe"
    TextPipeline(MultiScaleVQVAE(tokenizer_config), TextScaleTransformer(config), encoder).save_pretrained(path)
    return path


def test_sample_takes_the_empty_prompt_and_tells_changed_prompts_apart(text_model, tmp_path, capsys):
    from nextscale.cli.sample import grid_label

    out_dir, common = tmp_path / "each", ["sample", "--model", str(text_model), "--seed", "0"]
    assert main([*common, "--prompt", "a bag", "", "--out", str(tmp_path / "g.png"), "--out-dir", str(out_dir)]) == 0
    assert (out_dir / "prompts.txt").read_text(encoding="utf-8") == "a bag\n\n"  # line i is image i's prompt
    assert grid_label("") == "(empty prompt)" and grid_label("a bag") == "a bag"
    capsys.readouterr()
    assert main([*common, "--prompt", "a bag", "  ", "--out", str(tmp_path / "h.png")]) == 2  # blanks: a slip
    assert 'give some text, or "" (the empty prompt)' in capsys.readouterr().err
    # another run into the folder: the message names the prompt that changed, quoted (they ran together before)
    assert main([*common, "--prompt", "a bag", "a bag in a box", "--out-dir", str(out_dir)]) == 2
    assert "(--prompt 2 '', now 'a bag in a box')" in capsys.readouterr().err


def test_export_recommends_the_preview_cfg_so_sample_and_edit_agree():
    from nextscale.cli import build_parser
    from nextscale.training.export import with_preview_cfg

    def default_cfg(command: str) -> float:
        argv = {"sample": ["sample"], "edit": ["edit", "--image", "x.png", "--box", "0", "0", "1", "1"]}[command]
        return build_parser().parse_args(argv).cfg.value

    assert (default_cfg("sample"), default_cfg("edit")) == (1.5, 3.0)  # a model that recommends nothing
    run = {"objective": {"preview_cfg": 3.0}}
    assert with_preview_cfg(run, None)[0] == {"cfg": 3.0}
    assert with_preview_cfg(run, {"top_k": 10})[0] == {"cfg": 3.0, "top_k": 10}
    assert with_preview_cfg(run, {"cfg": 2.0})[0] == {"cfg": 2.0}  # --recommend cfg=2 wins
    head = {"objective": {"preview_cfg": 3.0, "train_sampler_head": True}}  # keeps its starting model's settings
    assert with_preview_cfg(head, None)[0] is None
    assert with_preview_cfg({"objective": {"preview_cfg": 1.5}}, None)[0] is None  # the default: no choice made


def test_an_unquoted_class_name_with_a_space_gets_a_hint(tiny_pipeline_dir, tmp_path, capsys):
    argv = ["sample", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "g.png")]
    assert main([*argv, "--class", "ankle", "boot"]) == 2
    err = capsys.readouterr().err
    assert "unknown class name 'ankle'" in err and '(quote a name with spaces: --class "ankle boot")' in err
    assert main([*argv, "--class", "ankle", "trouser"]) == 2  # no name joins: no hint
    assert "quote" not in capsys.readouterr().err


def test_info_of_tokens_counts_in_the_singular_and_names_the_left_out_files(monkeypatch):
    from nextscale.cli import info_paths
    from nextscale.data import token_manifest

    manifest = {
        "count": 7,
        "shards": [{"file": "shard-000000.safetensors", "count": 7}],
        "dtype": "int16",
        "scale_sides": [1, 2],
        "total_tokens": 5,
        "vocab_size": 32,
        "left_out": ["photos/cats/truncated.jpg"],
    }
    monkeypatch.setattr(token_manifest, "read_manifest", lambda folder: manifest)
    report = info_paths.describe_tokens(Path("tokens"))
    assert report["sequences"].startswith("7 in 1 shard (")
    assert report["left_out"] == "1 undecodable image: photos/cats/truncated.jpg"
    manifest["left_out"] = [f"{index}.jpg" for index in range(5)]
    named = info_paths.describe_tokens(Path("tokens"))["left_out"]
    assert named == "5 undecodable images: 0.jpg, 1.jpg, 2.jpg, ... (all 5 in manifest.json)"


def test_edit_box_message_names_the_cli_flag_only(tiny_pipeline_dir, tmp_path, capsys):
    argv = ["edit", "--model", str(tiny_pipeline_dir), "--image", str(tmp_path / "x.png")]
    assert main([*argv, "--box", "0", "0", "1.5", "1"]) == 2
    err = capsys.readouterr().err
    assert "these look like pixels: give fractions, or pixels of the model-size image with --pixels" in err
    assert "box_in_pixels" not in err


def test_counts_in_logs_read_as_english(tiny_pipeline_dir, tmp_path, capsys):
    from nextscale.data.summary import describe_data

    class Images:
        origin = "data/mine"

        def __len__(self) -> int:
            return 8

    assert describe_data(Images(), role="all")[0] == "data: 8 images (all: none held out) from data/mine"
    argv = ["sample", "--model", str(tiny_pipeline_dir), "--class", "1", "--out-dir", str(tmp_path / "each")]
    assert main(argv) == 0
    assert "wrote 1 PNG (one per image)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "train-tokenizer"])
def test_training_help_says_what_ctrl_c_does_and_the_workers_default(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "a second Ctrl-C quits at once without saving" in shown
    assert "data-loading worker processes (default: 0;" in shown
