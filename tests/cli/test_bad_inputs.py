"""Bad inputs, table-driven: every CLI case exits non-zero with exactly one stderr line naming the problem (no
traceback); every Python API case raises ValueError / TypeError / FileNotFoundError naming it."""

import dataclasses
import errno
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.pretrained import save_component
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE


@pytest.fixture(scope="module")
def paths(tiny_pipeline_dir, tmp_path_factory):
    """Placeholders of the CLI cases: good and broken model folders, an image, a mask, a plain file."""
    root = tmp_path_factory.mktemp("bad")
    Image.new("L", (40, 24), 128).save(root / "image.png")
    Image.new("L", (16, 16), 0).save(root / "black_mask.png")
    (root / "notes.txt").write_text("not an image")
    (root / "garbage.pth").write_bytes(b"\x80\x05not a checkpoint")
    (root / "a_folder").mkdir()

    def broken(name, change):
        folder = root / name
        shutil.copytree(tiny_pipeline_dir, folder)
        change(folder)
        return folder

    def edit_json(file, update):
        payload = json.loads(file.read_text())
        update(payload)
        file.write_text(json.dumps(payload))

    def unfit_tokenizer(folder):  # a tokenizer with another vocabulary than the transformer's
        config = Pipeline.from_pretrained(tiny_pipeline_dir).tokenizer.config
        save_component(MultiScaleVQVAE(dataclasses.replace(config, vocab_size=32)), folder / "tokenizer")

    return {
        "model": tiny_pipeline_dir,
        "tmp": root,
        "image": root / "image.png",
        "no_weights": broken("no_weights", lambda f: (f / "transformer" / "model.safetensors").unlink()),
        "no_transformer": broken("no_transformer", lambda f: shutil.rmtree(f / "transformer")),
        "pipeline_extra_key": broken(
            "pipeline_extra_key", lambda f: edit_json(f / "pipeline.json", lambda p: p.update(colour="blue"))
        ),
        "pipeline_bad_names": broken(
            "pipeline_bad_names", lambda f: edit_json(f / "pipeline.json", lambda p: p.update(class_names="bag"))
        ),
        "config_extra_key": broken(
            "config_extra_key",
            lambda f: edit_json(f / "transformer" / "config.json", lambda p: p["config"].update(width=3)),
        ),
        "config_bad_type": broken(
            "config_bad_type",
            lambda f: edit_json(f / "transformer" / "config.json", lambda p: p["config"].update(depth="four")),
        ),
        "unfit": broken("unfit", unfit_tokenizer),
    }


M = "--model {model}"
EDIT = "edit --model {model} --image {image}"
# (case id, command line with {placeholders}, words the one error line must contain)
CLI_CASES = [
    ("class-too-large", f"sample {M} --class 12", "class 12 is out of range"),
    ("class-negative", f"sample {M} --class -1", "class -1 is out of range"),
    ("class-unknown-name", f"sample {M} --class hat", "unknown class name 'hat'; valid names: 0 T-shirt/top"),
    ("cfg-inf", f"sample {M} --cfg inf", "cfg must be a finite number >= 0"),
    ("cfg-nan", f"sample {M} --cfg nan", "cfg must be a finite number >= 0"),
    ("cfg-negative", f"sample {M} --cfg -1", "--cfg must be a finite number >= 0"),
    ("cfg-not-a-number", f"sample {M} --cfg strong", "argument --cfg: invalid float value"),
    ("top-k-negative", f"sample {M} --top-k -5", "--top-k must be an integer >= 1 (or none to turn it off)"),
    ("top-k-zero", f"sample {M} --top-k 0", "--top-k must be an integer >= 1 (or none to turn it off), got 0"),
    ("top-p-zero", f"sample {M} --top-p 0", "--top-p must be in (0, 1]"),
    ("top-p-above-one", f"sample {M} --top-p 1.5", "--top-p must be in (0, 1]"),
    ("temperature-zero", f"sample {M} --temperature 0", "--temperature must be a finite number > 0"),
    ("temperature-inf", f"sample {M} --temperature inf", "temperature must be a finite number > 0"),
    ("seed-word", f"sample {M} --seed abc", "argument --seed: must be an integer, got 'abc'"),
    ("seed-float", f"sample {M} --seed 1.5", "argument --seed: must be an integer, got '1.5'"),
    ("seed-huge", f"sample {M} --seed 99999999999999999999999", "--seed: must be an integer in [-2**63, 2**64)"),
    ("batch-size-zero", f"sample {M} --batch-size 0", "--batch-size must be >= 1"),
    ("batch-size-negative", f"sample {M} --batch-size -4", "--batch-size must be >= 1"),
    ("num-zero", f"sample {M} --num 0", "--num must be >= 1"),
    ("nrow-zero", f"sample {M} --nrow 0", "--nrow must be >= 1"),
    ("absurd-num-grid", f"sample {M} --class 3 --num 100000", "write one PNG per image with --out-dir"),
    ("absurd-num-explicit-grid", f"sample {M} --num 5000 --out {{tmp}}/g.png --out-dir {{tmp}}/d", "--out-dir"),
    ("model-missing", "sample --model {tmp}/nowhere", "nowhere/pipeline.json not found"),
    ("model-no-transformer", "sample --model {no_transformer}", "is not a component folder"),
    ("model-no-weights", "sample --model {no_weights}", "model.safetensors not found"),
    ("pipeline-unknown-key", "sample --model {pipeline_extra_key}", "unknown entries ['colour']"),
    ("pipeline-wrong-type", "sample --model {pipeline_bad_names}", "'class_names' must be a JSON list"),
    ("config-unknown-key", "sample --model {config_extra_key}", "has no field(s) ['width']"),
    ("config-wrong-type", "sample --model {config_bad_type}", "TransformerConfig.depth must be int"),
    ("components-unfit", "sample --model {unfit}", "vocab"),
    ("bundled-unknown", "sample --model bundled:imagenet", "available: bundled:fashion-mnist, bundled:scenes"),
    ("device-bogus", f"sample {M} --device toaster", "--device 'toaster' is not a torch device"),
    ("cuda-graphs-on-cpu", f"sample {M} --cuda-graphs", "CUDA graphs need a CUDA device"),
    ("demo-cuda-graphs-on-cpu", "demo --cuda-graphs", "CUDA graphs need a CUDA device"),
    ("prompt-on-class-model", f"sample {M} --prompt 'a bag'", "this model is class-conditional"),
    ("prompt-blank", "sample --model bundled:scenes --prompt '  '", "--prompt 1 holds only blanks"),
    ("negative-without-prompt", f"sample {M} --negative-prompt blurry", "--negative-prompt goes with --prompt"),
    ("text-features-missing", f"sample {M} --text-features {{tmp}}/none.safetensors", "none.safetensors not found"),
    ("out-under-a-file", f"sample {M} --out {{tmp}}/notes.txt/g.png", "notes.txt is a file, not a folder; choose"),
    ("out-two-under-a-file", f"sample {M} --out {{tmp}}/notes.txt/a/g.png", "cannot create the folder"),
    ("out-is-a-folder", f"sample {M} --out {{tmp}}/a_folder", "is a folder; give a file name"),
    ("out-dir-under-a-file", f"sample {M} --out-dir {{tmp}}/notes.txt/each", "each: cannot create the folder"),
    ("out-dir-is-a-file", f"sample {M} --out-dir {{tmp}}/notes.txt", "notes.txt is a file, not a folder; give a"),
    ("out-not-an-image-type", f"sample {M} --out {{tmp}}/g.txt", "end the name with .png, .jpg, .jpeg or .webp"),
    ("out-no-extension", f"sample {M} --out {{tmp}}/grid", "has no image extension"),
    ("tokens-is-a-folder", f"sample {M} --save-tokens {{tmp}}/a_folder", "a_folder/tokens.safetensors"),
    ("tokens-under-a-file", f"sample {M} --save-tokens {{tmp}}/notes.txt/t.safetensors", "t.safetensors: "),
    ("edit-image-missing", "edit --model {model} --image {tmp}/none.png --box 0 0 1 1", "--image"),
    ("edit-image-not-an-image", "edit --model {model} --image {tmp}/notes.txt --box 0 0 .5 .5", "cannot read image"),
    ("edit-box-wrong-order", f"{EDIT} --box 0.8 0.2 0.2 0.8", "with y0 < y1 and x0 < x1"),
    (
        "edit-class-for-text-model",
        "edit --model bundled:scenes --image {image} --box 0 0 .5 .5 --class 2",
        "text-conditional: edit with --prompt TEXT",
    ),
    ("edit-box-outside", f"{EDIT} --box 0 0 1.5 1", "must lie inside the image as fractions in [0, 1]"),
    ("edit-box-pixels-outside", f"{EDIT} --box 0 0 40 40 --pixels", "pixels in [0, 16]"),
    ("edit-box-too-few-numbers", f"{EDIT} --box 0 0 1", "argument --box: expected 4 arguments"),
    ("edit-mask-missing", f"{EDIT} --mask {{tmp}}/none.png", "--mask"),
    (
        "edit-image-is-a-folder",
        "edit --model {model} --image {tmp}/a_folder --box 0 0 1 1",
        "a_folder is a folder; give",
    ),
    ("edit-mask-is-a-folder", f"{EDIT} --mask {{tmp}}/a_folder", "a_folder is a folder; give one image file"),
    (
        "train-tokenizer-scale-side-zero",
        "train-tokenizer --preset tiny --data {tmp}/a_folder --scale-sides 0,1 --run-dir {tmp}/never-made",
        "argument --scale-sides: every value must be a whole number >= 1 (like 1,2,4), got '0,1'",
    ),
    ("edit-mask-empty", f"{EDIT} --mask {{tmp}}/black_mask.png", "the mask leaves nothing to generate"),
    ("edit-extend-too-large", f"{EDIT} --extend 1.5", "--extend must be in (0, 1), got 1.5"),
    ("edit-extend-zero", f"{EDIT} --extend 0", "--extend must be in (0, 1), got 0.0"),
    ("edit-class-too-large", f"{EDIT} --box 0 0 .5 .5 --class 99", "class 99 is out of range"),
    ("edit-class-unknown-name", f"{EDIT} --box 0 0 .5 .5 --class hat", "unknown class name 'hat'"),
    ("edit-prompt-on-class-model", f"{EDIT} --box 0 0 .5 .5 --prompt boot", "edit with --class (--prompt needs a"),
    ("edit-prompt-empty", f"{EDIT} --box 0 0 .5 .5 --prompt ' '", "--prompt is empty"),
    ("edit-num-zero", f"{EDIT} --box 0 0 .5 .5 --num 0", "--num must be >= 1"),
    ("edit-cfg-nan", f"{EDIT} --box 0 0 .5 .5 --cfg nan", "--cfg must be a finite number >= 0"),
    ("edit-top-k-zero", f"{EDIT} --box 0 0 .5 .5 --top-k 0", "--top-k must be an integer >= 1"),
    ("edit-out-under-a-file", f"{EDIT} --box 0 0 .5 .5 --out {{tmp}}/notes.txt/e.png", "is a file, not a folder"),
    ("edit-out-not-an-image-type", f"{EDIT} --box 0 0 .5 .5 --out {{tmp}}/e.gif", "ends in '.gif'"),
    ("edit-side-by-side-is-a-folder", f"{EDIT} --box 0 0 1 1 --side-by-side {{tmp}}/a_folder", "is a folder"),
    ("evaluate-batch-size-zero", f"evaluate {M} --batch-size 0", "--batch-size must be >= 1, got 0"),
    ("evaluate-cfg-negative", f"evaluate {M} --cfg 1 -1", "--cfg must be a finite number >= 0"),
    ("evaluate-top-p-zero", f"evaluate {M} --top-p 0", "--top-p must be in (0, 1]"),
    ("evaluate-loss-fused", f"evaluate {M} --loss --tokens {{tmp}} --fused-kernels", "--fused-kernels"),
    ("evaluate-out-is-a-folder", f"evaluate {M} --out {{tmp}}/a_folder", "a_folder/report.json"),
    ("evaluate-out-under-a-file", f"evaluate {M} --out {{tmp}}/notes.txt/r.json", "is a file, not a folder"),
    ("evaluate-cache-is-a-folder", f"evaluate {M} --reference-cache {{tmp}}/a_folder", "a_folder/reference.npz"),
    ("evaluate-samples-is-a-file", f"evaluate {M} --save-samples {{tmp}}/garbage.pth", "pth is a file, not a"),
    ("make-scenes-out-is-a-file", "make-scenes --count 2 --out {tmp}/garbage.pth", "pth is a file, not a folder"),
    ("export-out-is-a-file", "export --run {tmp}/a_folder --out {tmp}/garbage.pth", "is a file, not a folder"),
    ("tokenize-out-is-a-file", "tokenize --tokenizer x --data fashion-mnist --out {tmp}/garbage.pth", "is a file, not"),
    ("tokenize-out-not-empty", "tokenize --tokenizer x --data fashion-mnist --out {tmp}", "is not empty"),
    ("convert-missing", "convert --vae {tmp}/none.pth --var {tmp}/none.pth --out {tmp}/c", "none.pth not found"),
    ("convert-garbage", "convert --vae {tmp}/garbage.pth --var {tmp}/garbage.pth --out {tmp}/c", "garbage.pth is not"),
    (
        "unknown-flag",
        f"sample {M} --colour blue",
        "unrecognized arguments: --colour blue (see `nextscale sample --help`)",
    ),
    (
        "train-tokens-not-a-token-folder",
        "train --tokenizer {tmp}/tok --tokens {tmp}/a_folder --run-dir {tmp}/never-made",
        "a_folder is not a token folder (no manifest.json); pass --tokens DIR naming the folder",
    ),
    # demo's model and output flags, plot --out, convert's input files
    ("demo-text-model-missing", "demo --text-model {tmp}/none --out-dir {tmp}/d", "--text-model"),
    ("demo-text-model-is-class", "demo --text-model bundled:fashion-mnist --out-dir {tmp}/d", "class-conditional"),
    ("demo-model-is-text", "demo --model bundled:scenes --no-text --out-dir {tmp}/d", "as --text-model bundled:scenes"),
    ("demo-out-dir-is-a-file", "demo --out-dir {tmp}/garbage.pth", "garbage.pth is a file, not a folder"),
    ("plot-out-is-a-folder", "plot --run {tmp} --out {tmp}/a_folder", "a_folder is a folder; give a file name, e.g."),
    ("convert-vae-is-a-folder", "convert --vae {tmp}/a_folder --var {tmp}/garbage.pth --out {tmp}/c", "is a folder"),
    ("convert-text-file", "convert --vae {tmp}/notes.txt --var {tmp}/notes.txt --out {tmp}/c", "not a PyTorch"),
]


@pytest.mark.parametrize("command, expected", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input_is_one_line(command, expected, paths, capsys, monkeypatch):
    import shlex

    monkeypatch.chdir(paths["tmp"])  # a default samples.png would land here, never in the repository
    argv = shlex.split(command.format(**paths))
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse errors exit directly
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code not in (0, None), f"{command} succeeded"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert expected in err, err


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_dir):
    return Pipeline.from_pretrained(tiny_pipeline_dir)


def picture():
    return Image.new("L", (20, 20), 100)


BOX = (0.0, 0.0, 0.5, 0.5)
# (case id, call on the tiny pipeline, exception type, words of the message)
API_CASES = [
    ("class-too-large", lambda p: p(class_labels=[11]), ValueError, "class 11 is out of range"),
    ("class-negative", lambda p: p(class_labels=[-2]), ValueError, "class -2 is out of range"),
    ("class-unknown-name", lambda p: p(class_labels=["hat"]), ValueError, "unknown class name 'hat'"),
    ("class-float", lambda p: p(class_labels=[1.5]), TypeError, "a class label is an int id or a class name"),
    ("class-empty", lambda p: p(class_labels=[]), ValueError, "class_labels is empty"),
    ("seed-too-large", lambda p: p(class_labels=[1], seed=2**70), ValueError, "an integer in [-2**63, 2**64)"),
    ("cfg-inf", lambda p: p(class_labels=[1], cfg=math.inf), ValueError, "cfg must be a finite number >= 0"),
    ("cfg-nan", lambda p: p(class_labels=[1], cfg=math.nan), ValueError, "cfg must be a finite number >= 0"),
    ("cfg-negative", lambda p: p(class_labels=[1], cfg=-0.5), ValueError, "cfg must be a finite number >= 0"),
    ("cfg-string", lambda p: p(class_labels=[1], cfg="3"), ValueError, "cfg must be a finite number >= 0"),
    ("top-k-negative", lambda p: p(class_labels=[1], top_k=-1), ValueError, "top_k must be an integer >= 1"),
    ("top-k-fraction", lambda p: p(class_labels=[1], top_k=2.5), ValueError, "top_k must be an integer >= 1"),
    ("top-p-zero", lambda p: p(class_labels=[1], top_p=0.0), ValueError, "top_p must be in (0, 1]"),
    ("top-p-nan", lambda p: p(class_labels=[1], top_p=math.nan), ValueError, "top_p must be in (0, 1]"),
    ("temperature-zero", lambda p: p(class_labels=[1], temperature=0), ValueError, "temperature must be"),
    ("temperature-negative", lambda p: p(class_labels=[1], temperature=-1.0), ValueError, "temperature must be"),
    ("seed-string", lambda p: p(class_labels=[1], seed="abc"), TypeError, "seed must be an int"),
    ("seed-float", lambda p: p(class_labels=[1], seed=1.5), TypeError, "seed must be an int"),
    ("num-zero", lambda p: p(class_labels=[1], num_images_per_prompt=0), ValueError, "num_images_per_prompt must"),
    ("num-string", lambda p: p(class_labels=[1], num_images_per_prompt="2"), TypeError, "num_images_per_prompt"),
    ("prompt-on-class-model", lambda p: p(prompt=["a bag"]), ValueError, "this pipeline is class-conditional"),
    ("output-type", lambda p: p(class_labels=[1], output_type="jpg"), ValueError, "output_type must be one of"),
    ("unknown-argument", lambda p: p(class_labels=[1], guidance=2), TypeError, "unexpected argument(s)"),
    ("edit-tensor-shape", lambda p: p.edit(torch.zeros(1, 3, 8, 8), box=BOX), ValueError, "image tensor must be"),
    ("edit-missing-file", lambda p: p.edit("/nonexistent/x.png", box=BOX), FileNotFoundError, "does not exist"),
    ("edit-box-order", lambda p: p.edit(picture(), box=(0.6, 0, 0.2, 1)), ValueError, "y0 < y1"),
    ("edit-box-outside", lambda p: p.edit(picture(), box=(0, 0, 1, 2)), ValueError, "must lie inside the image"),
    ("edit-mask-shape", lambda p: p.edit(picture(), mask=np.ones((2, 2, 2, 2))), ValueError, "a mask must be 2-D"),
    ("edit-box-and-mask", lambda p: p.edit(picture(), box=BOX, mask=np.ones((4, 4))), ValueError, "exactly one"),
    ("edit-class-name", lambda p: p.edit(picture(), box=BOX, class_label="hat"), ValueError, "unknown class name"),
    ("edit-extend", lambda p: p.outpaint(picture(), inner_fraction=0), ValueError, "inner_fraction must be"),
    ("sampling-config", lambda p: SamplingConfig(top_p=2.0), ValueError, "top_p must be in (0, 1]"),
    ("missing-folder", lambda p: Pipeline.from_pretrained("/nonexistent/m"), FileNotFoundError, "not found"),
    ("bundled-unknown", lambda p: Pipeline.from_pretrained("bundled:x"), FileNotFoundError, "bundled:fashion-mnist"),
    ("class-names-count", lambda p: Pipeline(p.tokenizer, p.transformer, ["a"]), ValueError, "got 1 class names"),
    ("class-names-type", lambda p: Pipeline(p.tokenizer, p.transformer, [1] * 10), TypeError, "non-empty strings"),
]


@pytest.mark.parametrize("call, error, expected", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_raises_a_clear_error(call, error, expected, pipe):
    with pytest.raises(error) as raised:
        call(pipe)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_ctrl_c_ends_with_one_line_that_says_interrupted(monkeypatch, capsys):
    from nextscale.cli import sample

    def interrupted(args):
        raise KeyboardInterrupt  # what Ctrl-C raises: no message of its own

    monkeypatch.setattr(sample, "run", interrupted)
    assert main(["sample", "--class", "1"]) == 130
    assert capsys.readouterr().err.strip() == "nextscale sample: interrupted"


def test_help_examples_keep_their_line_breaks():
    """A command split over lines with a backslash reads as one when its line break is kept: a lone backslash
    at a line's end inside a (non-raw) docstring would join the lines with a run of spaces instead."""
    import importlib
    import re

    from nextscale.cli import COMMANDS

    continued = 0
    for name, (module_name, _) in COMMANDS.items():
        text = importlib.import_module(f"nextscale.cli.{module_name}").__doc__ or ""
        joined = [line for line in text.splitlines() if re.search(r"\S {4,}--", line)]
        assert not joined, f"`nextscale {name} --help` joins example lines: {joined}"
        continued += sum(line.endswith(" \\") for line in text.splitlines())
    assert continued >= 5  # the multi-line examples of sample, tokenize, train and plot are there


@pytest.mark.parametrize(
    ("code", "fix"), [(errno.ENOSPC, "free some space"), (errno.ENAMETOOLONG, "choose a shorter file name")]
)
def test_bare_system_errors_name_the_file_and_the_fix(code, fix):
    from nextscale.cli import error_text

    text = error_text(OSError(code, os.strerror(code), "/data/out/0001.png"))
    assert text.startswith(f"{os.strerror(code)}: /data/out/0001.png; {fix}") and "[Errno" not in text


def test_evaluate_under_torchrun_is_refused_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it: each process would run the whole evaluation
    assert main(["evaluate", "--num", "4", "--features", "classifier"]) == 2
    err = capsys.readouterr().err.strip()
    assert "evaluate runs in one process" in err and "evaluate --samples" in err and len(err.splitlines()) == 1


def test_a_reader_that_stops_early_is_no_error(tmp_path):
    """`nextscale info ... | head`: the closed pipe ends the command quietly (status 141, as a shell reports
    SIGPIPE), not with "error: [Errno 32] Broken pipe"."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line
    try:
        command = [sys.executable, "-m", "nextscale", "info", "bundled:fashion-mnist"]
        done = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_an_official_checkpoint_given_as_model_says_to_convert_it(tmp_path, capsys):
    checkpoint = tmp_path / "var_d16.pth"
    checkpoint.write_bytes(b"weights")
    assert main(["sample", "--model", str(checkpoint), "--class", "0", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "var_d16.pth is a file, not a pipeline folder: convert official VAR/STAR checkpoints first" in err
    assert "nextscale convert --vae VAE.pth --var var_d16.pth --out DIR" in err
