"""Output paths and what the CLI writes: checked before any work, in the format asked for, never mixed or stale."""

import errno
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.sampling.pipeline import Pipeline

FASHION_MNIST = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"
EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "nextscale" / "assets" / "demo" / "examples" / "example.png"


def run(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def one_line_error(code: int, err: str) -> str:
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# (command, the flag whose folder cannot be written); {model} and {tmp} are filled in
UNWRITABLE = [
    ("sample --model {model} --out {tmp}/ro/g.png", "--out"),
    ("sample --model {model} --out-dir {tmp}/ro/each", "--out-dir"),
    ("sample --model {model} --save-tokens {tmp}/ro/t.safetensors", "--save-tokens"),
    ("edit --model {model} --image {image} --box 0 0 1 1 --out {tmp}/ro/e.png", "--out"),
    ("evaluate --model {model} --out {tmp}/ro/r.json", "--out"),
    ("evaluate --model {model} --reference-cache {tmp}/ro/c.npz", "--reference-cache"),
    ("evaluate --model {model} --save-samples {tmp}/ro/samples", "--save-samples"),
    ("make-scenes --count 2 --out {tmp}/ro/scenes", "--out"),
    ("export --run {tmp}/run --out {tmp}/ro/model", "--out"),
    ("tokenize --tokenizer {model}/tokenizer --data fashion-mnist --out {tmp}/ro/tokens", "--out"),
]


@pytest.mark.parametrize("command, flag", UNWRITABLE, ids=[f"{c.split()[0]} {f}" for c, f in UNWRITABLE])
def test_an_unwritable_output_folder_is_refused_before_any_work(
    command, flag, tiny_pipeline_dir, tmp_path, capsys, monkeypatch
):
    """Root passes os.access on an immutable folder or /sys, so the check writes a probe file: refused here."""
    (tmp_path / "ro").mkdir()
    real_mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == tmp_path / "ro":
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_mkstemp(*args, dir=dir, **kwargs)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(Pipeline, "from_pretrained", no_work)
    monkeypatch.setattr("nextscale.training.export.load_tokenizer", no_work)
    monkeypatch.setattr("nextscale.training.export.export_run", no_work)
    monkeypatch.setattr("nextscale.data.scenes.build_scenes", no_work)
    argv = command.format(model=tiny_pipeline_dir, tmp=tmp_path, image=EXAMPLE).split()
    err = one_line_error(*run(argv, capsys)[::2])
    assert err.startswith(f"nextscale {argv[0]}: error: {flag} {tmp_path}/ro/"), err
    assert "(Operation not permitted); choose a folder you can write to" in err and "Errno" not in err
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == []  # nothing was made


def test_a_refused_command_creates_no_folders(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "g.png"
    one_line_error(*run(["sample", "--model", tiny_pipeline_dir, "--class", 99, "--out", out], capsys)[::2])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "suffix, image_format", [(".png", "PNG"), (".jpg", "JPEG"), (".JPEG", "JPEG"), (".webp", "WEBP")]
)
def test_sample_writes_the_format_its_extension_names(suffix, image_format, tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / f"grid{suffix}"
    code, printed, _ = run(["sample", "--model", tiny_pipeline_dir, "--class", 1, "--seed", 0, "--out", out], capsys)
    assert code == 0 and f"to {out}" in printed
    assert Image.open(out).format == image_format
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no probe or temporary file left


def sample_into(folder: Path, model: Path, *flags) -> list:
    return ["sample", "--model", model, "--class", 3, "--num", 2, "--no-progress", "--out-dir", folder, *flags]


def test_out_dir_resumes_only_the_run_it_holds(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "each"
    first = sample_into(folder, tiny_pipeline_dir, "--seed", 0, "--cfg", 1)
    assert run(first, capsys)[0] == 0
    settings = json.loads((folder / "sample-settings.json").read_text())
    assert settings["--seed"] == 0 and settings["--cfg"] == 1.0 and settings["--class"] == [3]
    images = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    assert len(images) == 2

    code, printed, _ = run(sample_into(folder, tiny_pipeline_dir, "--seed", 0, "--cfg", 1), capsys)
    assert code == 0 and "skipped 2 already there" in printed  # the same settings resume
    code, printed, _ = run(
        sample_into(folder, tiny_pipeline_dir, "--seed", 0, "--cfg", "1.0", "--class", "dress"), capsys
    )
    assert code == 0 and "skipped 2 already there" in printed  # the same settings spelled otherwise

    changed = sample_into(folder, tiny_pipeline_dir, "--seed", 7, "--cfg", 5, "--top-k", 3)
    err = one_line_error(*run(changed, capsys)[::2])
    assert re.search(r"--seed 0, now 7; --cfg 1\.0, now 5\.0; --top-k none, now 3\)", err), err
    assert "re-run with those settings to resume, or choose another --out-dir" in err

    other_model = tmp_path / "copy"
    shutil.copytree(tiny_pipeline_dir, other_model)
    err = one_line_error(*run(sample_into(folder, other_model, "--seed", 0, "--cfg", 1), capsys)[::2])
    assert f"--model {tiny_pipeline_dir}, now {other_model}" in err
    assert {p.name: p.read_bytes() for p in folder.glob("*.png")} == images  # nothing replaced or added


def test_out_dir_without_a_record_but_with_images_is_refused(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    Image.new("L", (16, 16)).save(folder / "0000_class3.png")
    err = one_line_error(*run(sample_into(folder, tiny_pipeline_dir, "--seed", 0), capsys)[::2])
    assert "holds sample images but no sample-settings.json" in err


def test_out_dir_refuses_a_model_folder_written_again_with_other_weights(tiny_pipeline_dir, tmp_path, capsys):
    import torch

    model, folder = tmp_path / "model", tmp_path / "each"
    shutil.copytree(tiny_pipeline_dir, model)
    assert run(sample_into(folder, model, "--seed", 0), capsys)[0] == 0
    images = {p.name: p.read_bytes() for p in folder.glob("*.png")}
    (folder / "0001_class3.png").unlink()
    pipe = Pipeline.from_pretrained(model)
    with torch.no_grad():
        pipe.transformer.head.weight.add_(1.0)  # more training, exported into the same folder
    pipe.save_pretrained(model)
    err = one_line_error(*run(sample_into(folder, model, "--seed", 0), capsys)[::2])  # was resumed: a silent mix
    assert "--model-weights" in err and "the model folder holds other weights since" in err
    assert sorted(p.name for p in folder.glob("*.png")) == ["0000_class3.png"]
    record = json.loads((folder / "sample-settings.json").read_text())
    del record["--model-weights"]  # a record from before the fingerprint: still resumes
    (folder / "sample-settings.json").write_text(json.dumps(record))
    assert run(sample_into(folder, model, "--seed", 0), capsys)[0] == 0
    assert (folder / "0000_class3.png").read_bytes() == images["0000_class3.png"]


def test_out_dir_refuses_turning_off_a_setting_recorded_only_when_on(tmp_path):
    from nextscale.cli.sample_files import check_out_dir_settings

    # masked sampling is recorded only when on (older folders lack it): a re-run with it off is another run
    plain = {"--model": "m", "--seed": 0, "--cfg": 4.5}
    check_out_dir_settings(tmp_path, {**plain, "--masked-sampling": True, "--masked-plan": "1024"})
    Image.new("RGB", (16, 16)).save(tmp_path / "0000.png")
    with pytest.raises(ValueError, match=r"other settings \(--masked-sampling on, now off\)"):
        check_out_dir_settings(tmp_path, plain)
    check_out_dir_settings(tmp_path, {**plain, "--masked-sampling": True, "--masked-plan": "1024"})  # resumes
    with pytest.raises(ValueError, match=r"--masked-plan 1024, now head-only"):
        check_out_dir_settings(tmp_path, {**plain, "--masked-sampling": True, "--masked-plan": "head-only"})
    (tmp_path / "sample-settings.json").write_text("[1]")  # was an AttributeError traceback
    with pytest.raises(ValueError, match=r"sample-settings.json is damaged \(not a JSON object\)"):
        check_out_dir_settings(tmp_path, plain)


def test_out_dir_with_a_record_but_no_images_takes_new_settings(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "failed"  # a first run that stopped before its first image
    folder.mkdir()
    (folder / "sample-settings.json").write_text(json.dumps({"--seed": 1}))
    assert run(sample_into(folder, tiny_pipeline_dir, "--seed", 0), capsys)[0] == 0
    assert json.loads((folder / "sample-settings.json").read_text())["--seed"] == 0


def tokenize(out: Path, tokenizer: Path, shard_size: int, *flags) -> list:
    data = f"fashion-mnist:{FASHION_MNIST}"
    return ["tokenize", "--tokenizer", tokenizer, "--data", data, "--split", "test", "--out", out, "--no-progress"] + [
        "--shard-size",
        shard_size,
        *flags,
    ]


def test_tokenize_refuses_a_token_folder_and_overwrite_leaves_no_stale_shard(tiny_pipeline_dir, tmp_path, capsys):
    out, tokenizer = tmp_path / "tokens", tiny_pipeline_dir / "tokenizer"
    assert run(tokenize(out, tokenizer, 30), capsys)[0] == 0
    assert len(list(out.glob("shard-*.safetensors"))) == 4  # 100 test images
    (out / "notes.md").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    err = one_line_error(*run(tokenize(out, tokenizer, 60), capsys)[::2])
    assert "already holds a token folder (4 shards and manifest.json)" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    assert run(tokenize(out, tokenizer, 60, "--overwrite"), capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "notes.md",
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [shard["count"] for shard in manifest["shards"]] == [60, 40]

    (out / "manifest.json").unlink()  # an unfinished run: shards without a manifest
    err = one_line_error(*run(tokenize(out, tokenizer, 60), capsys)[::2])
    assert "holds 2 shards of an unfinished tokenization" in err


def test_tokenize_overwrite_keeps_the_old_folder_when_the_data_is_bad(tiny_pipeline_dir, tmp_path, capsys):
    out, tokenizer = tmp_path / "tokens", tiny_pipeline_dir / "tokenizer"
    assert run(tokenize(out, tokenizer, 50), capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = ["tokenize", "--tokenizer", tokenizer, "--data", f"fashion-mnist:{tmp_path}/none", "--out", out]
    one_line_error(*run([*bad, "--overwrite"], capsys)[::2])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_edit_paste_back_prints_the_files_it_wrote(tiny_pipeline_dir, tmp_path, capsys):
    out = tmp_path / "pb.jpg"
    argv = ["edit", "--model", tiny_pipeline_dir, "--image", EXAMPLE, "--box", 0, 0, 0.5, 0.5, "--seed", 0]
    code, printed, _ = run([*argv, "--paste-back", "--num", 2, "--out", out], capsys)
    written = [tmp_path / "pb_0.jpg", tmp_path / "pb_1.jpg"]
    assert code == 0 and printed.strip() == f"wrote {written[0]}, {written[1]}"
    assert sorted(tmp_path.iterdir()) == written and Image.open(written[0]).format == "JPEG"


def test_one_image_without_class_names_is_written_as_itself(tmp_path, capsys):
    from nextscale.pretrained import bundled_model_path

    unnamed = tmp_path / "unnamed"  # as a converted official model: no class names
    shutil.copytree(bundled_model_path("bundled:fashion-mnist"), unnamed)
    index = json.loads((unnamed / "pipeline.json").read_text())
    index.pop("class_names")
    (unnamed / "pipeline.json").write_text(json.dumps(index))
    assert (
        main(["sample", "--model", str(unnamed), "--class", "3", "--seed", "0", "--out", str(tmp_path / "one.png")])
        == 0
    )
    assert "wrote 1 image to" in capsys.readouterr().out
    assert Image.open(tmp_path / "one.png").size == (32, 32)  # no frame around it


def test_save_tokens_alone_writes_only_the_tokens(tiny_pipeline_dir, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.chdir(tmp_path)  # where the default grid samples.png would land
    tokens = tmp_path / "t.safetensors"
    code, printed, _ = run(
        ["sample", "--model", tiny_pipeline_dir, "--class", 1, 2, "--seed", 0, "--save-tokens", tokens], capsys
    )
    assert code == 0 and "wrote tokens (2, " in printed and "samples.png" not in printed
    assert sorted(path.name for path in tmp_path.iterdir()) == ["t.safetensors"]  # no grid nobody asked for
    assert load_file(tokens)["tokens"].shape[0] == 2
    # with --out the grid is written beside them, as before
    code, printed, _ = run(
        ["sample", "--model", tiny_pipeline_dir, "--class", 1, "--save-tokens", tokens, "--out", "g.png"], capsys
    )
    assert code == 0 and (tmp_path / "g.png").is_file()


def test_a_prompt_with_a_line_break_is_refused_before_prompts_txt_is_written(tmp_path, capsys):
    from nextscale.evaluation.generate import PromptSampleWriter

    out_dir = tmp_path / "each"
    code, _, err = run(["sample", "--prompt", "a bag", "a red\nsneaker", "--out-dir", out_dir], capsys)
    assert "--prompt 2 ('a red\\nsneaker') holds a line break" in one_line_error(code, err)
    assert not out_dir.exists()
    for breaking in ("a\r\nb", "a\rb", "a\u2028b", "a\x85b"):  # every break str.splitlines (and so a reader) knows
        with pytest.raises(ValueError, match="prompt 2 .* holds a line break"):
            PromptSampleWriter(tmp_path / "evaluated", ["one", breaking])
    assert not (tmp_path / "evaluated").exists()
    # one-line prompts (and the empty prompt of an edit towards nothing) keep one line each: line i is image i's
    prompts = ["a bag", "", "un sac à dos \\n littéral"]
    PromptSampleWriter(tmp_path / "evaluated", prompts)
    assert (tmp_path / "evaluated" / "prompts.txt").read_text(encoding="utf-8").split("\n")[:-1] == prompts
