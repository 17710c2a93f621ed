"""Sample sets as files: `sample --class all --npz`, the same images from two processes (torchrun, gloo), and
`evaluate --samples` on a folder or an .npz (no model)."""

import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from nextscale.cli import evaluate, main
from nextscale.data.fashion_mnist import FashionMNIST

FASHION_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def sample(model, *flags) -> int:
    return main(["sample", "--model", str(model), "--no-progress", *map(str, flags)])


def pixels_of(folder: Path) -> np.ndarray:
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in files])


def test_class_all_packs_an_npz_that_matches_the_pngs_and_survives_a_resume(
    tiny_pipeline_dir, tmp_path, capsys, monkeypatch
):
    folder, packed, streamed = tmp_path / "pngs", tmp_path / "packed.npz", tmp_path / "streamed.npz"
    args = ["--class", "all", "--num", 2, "--batch-size", 8, "--seed", 4]
    assert sample(tiny_pipeline_dir, *args, "--out-dir", folder, "--npz", packed) == 0
    assert len(list(folder.glob("*.png"))) == 20  # 10 classes x 2
    archive = np.load(packed)
    assert archive["arr_0"].shape == (20, 16, 16, 3) and archive["arr_0"].dtype == np.uint8
    assert archive["arr_1"].tolist() == [label for label in range(10) for _ in range(2)]
    np.testing.assert_array_equal(archive["arr_0"], pixels_of(folder))

    for name in ("0003_class1.png", "0017_class8.png"):  # an interrupted run: two images missing
        (folder / name).unlink()
    damaged = folder / "0009_class4.png"
    damaged.write_bytes(damaged.read_bytes()[:-20])  # and one cut short later (a bad copy): it is made again
    capsys.readouterr()
    assert sample(tiny_pipeline_dir, *args, "--out-dir", folder, "--npz", packed) == 0
    assert "wrote 3 PNGs" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(packed)["arr_0"], archive["arr_0"])

    monkey_cwd = tmp_path / "cwd"
    monkey_cwd.mkdir()
    monkeypatch.chdir(monkey_cwd)
    assert sample(tiny_pipeline_dir, *args, "--npz", streamed) == 0  # no --out-dir: written as the images come
    assert not (monkey_cwd / "samples.png").exists()  # --npz alone writes no default grid
    streamed_archive = np.load(streamed)
    np.testing.assert_array_equal(streamed_archive["arr_0"], archive["arr_0"])
    assert streamed_archive["arr_1"].tolist() == archive["arr_1"].tolist()


def test_class_all_goes_alone_and_npz_names_an_npz(tiny_pipeline_dir, tmp_path, capsys):
    assert sample(tiny_pipeline_dir, "--class", "all", 3, "--out-dir", tmp_path / "a") == 2
    assert "--class all already names every class; give it alone" in capsys.readouterr().err
    assert sample(tiny_pipeline_dir, "--npz", tmp_path / "samples.zip") == 2
    assert "give a file name ending in .npz" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sample_worker(rank: int, world_size: int, port: int, model: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    refused = main(["sample", "--model", model, "--no-progress", "--num", "3", "--out", f"{out}/grid.png"])
    assert refused == 2  # a grid needs every image in one process
    args = ["--class", "all", "--num", "1", "--batch-size", "3", "--seed", "9", "--no-progress"]
    assert main(["sample", "--model", model, *args, "--out-dir", f"{out}/pngs", "--npz", f"{out}/all.npz"]) == 0


@pytest.mark.usefixtures("one_thread")  # as the workers (and torchrun): other thread counts round differently
def test_two_processes_write_the_images_one_process_writes(tiny_pipeline_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--class", "all", "--num", 1, "--batch-size", 3, "--seed", 9]
    assert sample(tiny_pipeline_dir, *args, "--out-dir", one / "pngs", "--npz", one / "all.npz") == 0
    mp.spawn(_sample_worker, args=(2, _free_port(), str(tiny_pipeline_dir), str(two)), nprocs=2, join=True)
    names = sorted(path.name for path in (one / "pngs").glob("*.png"))
    assert sorted(path.name for path in (two / "pngs").glob("*.png")) == names and len(names) == 10
    for name in names:  # batches 0 and 2 from rank 0, 1 and 3 from rank 1: the same seeds, the same bytes
        assert (two / "pngs" / name).read_bytes() == (one / "pngs" / name).read_bytes()
    assert (two / "all.npz").read_bytes() == (one / "all.npz").read_bytes()
    assert not (two / "grid.png").exists()


class ChannelMeans:
    """A tiny injected feature network: the mean of each channel (3-d features)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


@pytest.fixture
def channel_means(monkeypatch):
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda *args, **kwargs: (ChannelMeans(), "channel-means"))


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_evaluate_samples_scores_files_as_the_model_run_scored_them(tiny_pipeline_dir, tmp_path, channel_means, capsys):
    folder = tmp_path / "saved"
    common = ["--reference", f"fashion-mnist:{FASHION_ASSETS}", "--batch-size", "16"]
    argv = ["evaluate", "--model", str(tiny_pipeline_dir), "--num", "40", "--seed", "0", "--save-samples", str(folder)]
    assert main([*argv, *common, "--out", str(tmp_path / "model.json")]) == 0
    assert main(["evaluate", "--samples", str(folder), *common, "--out", str(tmp_path / "folder.json")]) == 0
    from_model, from_folder = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("model", "folder"))
    assert from_folder["measured"] == "sample files" and from_folder["num_samples"] == 40
    assert from_folder["reference_count"] == from_model["reference_count"] == 100
    # the same images, rounded to 8 bits in the files: the distances barely move
    assert from_folder["fid"] == pytest.approx(from_model["fid"], rel=0.02, abs=1e-3)
    assert from_folder["precision"] == from_model["precision"] and from_folder["recall"] == from_model["recall"]
    assert "class_consistency" not in from_folder  # 16 px samples: the 32 px classifier does not apply

    packed = tmp_path / "saved.npz"
    from nextscale.data.sample_sets import NpzImageWriter, SampleSet

    samples = SampleSet(folder)
    with NpzImageWriter(packed, samples.count, samples.side) as archive:
        for images, labels in samples.batches(16):
            archive.add(images, labels.tolist())
    assert main(["evaluate", "--samples", str(packed), *common, "--out", str(tmp_path / "npz.json")]) == 0
    from_npz = json.loads((tmp_path / "npz.json").read_text())
    assert from_npz["fid"] == from_folder["fid"] and from_npz["kid"] == from_folder["kid"]


def test_evaluate_samples_judges_labelled_fashion_images_with_the_classifier(tmp_path, capsys):
    from nextscale.data.sample_sets import NpzImageWriter

    real = FashionMNIST(root=FASHION_ASSETS, split="test", size=32, channels=1)
    images = torch.stack([real[i][0] for i in range(60)])
    labels = [int(real[i][1]) for i in range(60)]
    shuffled = labels[1:] + labels[:1]  # every label moved one image on: mostly wrong
    for name, given in (("true.npz", labels), ("shifted.npz", shuffled)):
        with NpzImageWriter(tmp_path / name, 60, 32) as archive:
            archive.add(images, given)
    scores = {}
    for name in ("true.npz", "shifted.npz"):
        argv = ["evaluate", "--samples", str(tmp_path / name), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
        assert main([*argv, "--features", "classifier", "--out", str(tmp_path / f"{name}.json")]) == 0
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert scores["true.npz"]["class_consistency"] >= 0.8  # the bundled classifier on real test images
    assert scores["shifted.npz"]["class_consistency"] <= 0.4
    # the samples are the reference's first 60 images: the closest any set can be
    assert scores["true.npz"]["fid"] == scores["shifted.npz"]["fid"] < 15


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reference", "fashion-mnist", "--model", "x"], "--model is for evaluating a model; --samples measures"),
        (["--reference", "fashion-mnist", "--cfg", "2"], "--cfg is a sampling setting"),
        (["--reference", "fashion-mnist", "--dtype", "bf16"], "--dtype is a sampling setting"),
        (["--reference", "fashion-mnist", "--loss"], "--loss is for evaluating a model"),
        ([], "--samples needs --reference"),
        (["--reference", "fashion-mnist", "--num", "99"], r"--num must be 4 to 5 \(the images in"),
        (["--reference", "fashion-mnist", "--cfg", "1", "1.0"], "--cfg 1 1 repeats a value"),
    ],
)
def test_evaluate_samples_refusals_are_one_line(tmp_path, capsys, flags, message):
    from nextscale.data.sample_sets import NpzImageWriter

    with NpzImageWriter(tmp_path / "five.npz", 5, 32) as archive:
        archive.add(torch.zeros(5, 1, 32, 32))
    assert main(["evaluate", "--samples", str(tmp_path / "five.npz"), "--features", "classifier", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nextscale evaluate: error:")
    assert re.search(message, err)


def test_a_single_image_is_refused_as_too_few_for_fid(tmp_path, capsys):
    from nextscale.data.sample_sets import NpzImageWriter

    with NpzImageWriter(tmp_path / "one.npz", 1, 32) as archive:
        archive.add(torch.zeros(1, 1, 32, 32))
    argv = ["evaluate", "--samples", str(tmp_path / "one.npz"), "--reference", "fashion-mnist"]
    assert main([*argv, "--features", "classifier"]) == 2
    assert "one.npz holds 1 image(s), and FID and precision/recall need at least 4" in capsys.readouterr().err


def test_inception_score_of_files_in_class_order_is_not_split_by_class(tmp_path):
    """`sample --class all` writes images class by class; consecutive splits would each hold one class."""
    from nextscale.data.sample_sets import NpzImageWriter

    real = FashionMNIST(root=FASHION_ASSETS, split="test", size=32, channels=1)
    order = sorted(range(100), key=lambda i: int(real[i][1]))
    with NpzImageWriter(tmp_path / "sorted.npz", 100, 32) as archive:
        archive.add(torch.stack([real[i][0] for i in order]), [int(real[i][1]) for i in order])
    argv = ["evaluate", "--samples", str(tmp_path / "sorted.npz"), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    assert main([*argv, "--features", "classifier", "--out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["classifier_inception_score"] > 4  # in file order, ten one-class splits would score about 1


def test_show_scales_draws_one_row_per_image_and_one_column_per_scale(tiny_pipeline_dir, tmp_path, capsys):
    from PIL import Image

    from nextscale.cli.sample import MAX_GRID_IMAGES

    grid, tokens = tmp_path / "scales.png", tmp_path / "tokens.safetensors"
    args = ["--class", 1, 3, "--num", 2, "--seed", 0, "--show-scales", grid, "--save-tokens", tokens]
    assert sample(tiny_pipeline_dir, *args) == 0
    assert not (tmp_path / "samples.png").exists()
    picture = np.asarray(Image.open(grid).convert("RGB"))
    # tiny model: 16 px images, scales 1-2-4 -> 3 columns; 4 images -> 4 rows; 2 px padding around cells
    cell_width, cell_height = (picture.shape[1] - 4 * 2) / 3, (picture.shape[0] - 5 * 2) / 4
    assert cell_width == int(cell_width) >= 16 and cell_height == int(cell_height) > 16  # a label under each tile
    left = 2 + 2 * (int(cell_width) + 2) + (int(cell_width) - 16) // 2  # first row, last column, centred
    last_column = picture[2:18, left : left + 16]
    from nextscale.sampling.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(tiny_pipeline_dir)
    sampled = pipe(class_labels=[1, 1, 3, 3], seed=0, output_type="np").images[0]  # (H, W, C) uint8
    np.testing.assert_array_equal(last_column, np.repeat(sampled, 3, axis=-1) if sampled.shape[-1] == 1 else sampled)

    too_many = MAX_GRID_IMAGES // 3 + 1
    assert sample(tiny_pipeline_dir, "--num", too_many, "--show-scales", grid) == 2
    assert "--show-scales draws 3 tiles per image" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_a_cfg_sweep_of_a_class_model_gives_the_rows_of_single_runs(tiny_pipeline_dir, tmp_path, channel_means):
    common = ["evaluate", "--model", str(tiny_pipeline_dir), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    common += ["--num", "12", "--batch-size", "5", "--seed", "3"]
    sweep = tmp_path / "sweep.json"
    assert main([*common, "--cfg", "1", "2.5", "--save-samples", str(tmp_path / "s"), "--out", str(sweep)]) == 0
    swept = json.loads(sweep.read_text())
    assert [row["cfg"] for row in swept["results"]] == [1.0, 2.5]
    assert swept["sampling"]["seed"] == 3 and "cfg" not in swept["sampling"]
    for index, cfg in enumerate(("1", "2.5")):  # each row is what a run at that one value reports
        assert main([*common, "--cfg", cfg, "--out", str(tmp_path / "single.json")]) == 0
        alone = json.loads((tmp_path / "single.json").read_text())
        assert alone["sampling"]["cfg"] == float(cfg) and alone["sampling"]["seed"] == 3
        assert {name: swept["results"][index][name] for name in ("fid", "kid", "precision", "recall")} == {
            name: alone[name] for name in ("fid", "kid", "precision", "recall")
        }
    assert sorted(path.name for path in (tmp_path / "s").iterdir()) == ["cfg-1", "cfg-2.5"]
    assert len(list((tmp_path / "s" / "cfg-2.5").glob("*_class*.png"))) == 12


def test_negative_labels_are_no_labels_for_the_judge(tmp_path):
    from nextscale.data.sample_sets import NpzImageWriter

    real = FashionMNIST(root=FASHION_ASSETS, split="test", size=32, channels=1)
    with NpzImageWriter(tmp_path / "unlabelled.npz", 20, 32) as archive:
        archive.add(torch.stack([real[i][0] for i in range(20)]), [-1] * 20)
    argv = ["evaluate", "--samples", str(tmp_path / "unlabelled.npz"), "--reference", f"fashion-mnist:{FASHION_ASSETS}"]
    assert main([*argv, "--features", "classifier", "--out", str(tmp_path / "report.json")]) == 0
    assert "class_consistency" not in json.loads((tmp_path / "report.json").read_text())


def test_a_reconstruction_run_takes_no_cfg_sweep(tiny_pipeline_dir, capsys):
    argv = ["evaluate", "--model", str(tiny_pipeline_dir), "--reconstructions", "--cfg", "1", "2"]
    assert main([*argv, "--features", "classifier"]) == 2
    assert "leave out the --cfg sweep" in capsys.readouterr().err


def test_a_reference_of_one_image_is_refused_in_words(tmp_path, capsys):
    from PIL import Image

    from nextscale.data.sample_sets import NpzImageWriter

    (tmp_path / "real" / "bag").mkdir(parents=True)
    Image.new("L", (32, 32), color=90).save(tmp_path / "real" / "bag" / "only.png")
    with NpzImageWriter(tmp_path / "s.npz", 4, 32) as archive:
        archive.add(torch.zeros(4, 1, 32, 32))
    argv = ["evaluate", "--samples", str(tmp_path / "s.npz"), "--reference", str(tmp_path / "real")]
    assert main([*argv, "--features", "classifier"]) == 2
    assert "holds 1 usable image(s); give a folder of at least 4 real images" in capsys.readouterr().err


def test_the_documented_torchrun_commands_get_through_torchrun_to_nextscale():
    """torchrun parses the whole command line first: a flag it can read as an abbreviation of its own (--num for
    --numa-binding) stops the command before nextscale starts. Every documented torchrun line must get through."""
    import shlex

    from torch.distributed.run import get_args_parser

    from nextscale.cli import build_parser
    from nextscale.cli import sample as sample_command

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    text = (readme + sample_command.__doc__).replace("\\\n", " ")
    lines = [line.strip().strip("`") for line in re.findall(r"torchrun --nproc[^\n|]*", text)]
    lines = [line.split("`")[0] for line in lines if " -m nextscale " in line]
    assert len(lines) >= 3
    for line in lines:
        launched = get_args_parser().parse_args(shlex.split(line)[1:])  # exits on an ambiguous flag
        assert launched.training_script == "nextscale"
        args = build_parser().parse_args(launched.training_script_args)
        assert args.command in ("sample", "train")
        if args.command == "sample":
            assert args.num == 50


def _archive(path, pixels):
    from nextscale.data.sample_sets import NpzImageWriter

    with NpzImageWriter(path, len(pixels), pixels.shape[1]) as archive:
        archive.add_pixels(pixels)
    return path


def test_an_npz_of_real_images_is_a_reference_for_inception_fid(tmp_path, capsys, channel_means):
    """OpenAI's reference batches (arr_0 uint8 N x H x W x 3) are read as they are: samples equal to the reference
    score FID 0 (the feature network is the injected channel means); another size or the classifier features are
    refused in one line."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    reference = _archive(tmp_path / "reference.npz", real)
    same = _archive(tmp_path / "same.npz", real)
    darker = _archive(tmp_path / "darker.npz", real // 4)
    scores = {}
    for samples in (same, darker):
        out = tmp_path / f"{samples.stem}.json"
        argv = ["evaluate", "--samples", str(samples), "--reference", str(reference), "--out", str(out)]
        assert main(argv) == 0
        scores[samples.stem] = json.loads(out.read_text())
    assert abs(scores["same"]["fid"]) < 1e-6 and scores["darker"]["fid"] > 0.1
    assert scores["same"]["reference_count"] == 6 and scores["same"]["reference_location"] == str(reference)
    capsys.readouterr()
    small = _archive(tmp_path / "small.npz", real[:, :16, :16])
    for argv, message in (
        (["--samples", str(same), "--reference", str(small)], "holds 16 px images, the samples are 32 px"),
        (["--samples", str(same), "--reference", str(reference), "--features", "classifier"], "drop --features"),
    ):
        assert main(["evaluate", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_drawn_labels_resume_lists_the_folder_once_not_once_per_image(tiny_pipeline_dir, tmp_path, monkeypatch):
    from nextscale.cli import sample_files

    folder, packed = tmp_path / "drawn", tmp_path / "drawn.npz"
    args = ["--num", 12, "--batch-size", 4, "--seed", 3, "--out-dir", folder, "--npz", packed]
    assert sample(tiny_pipeline_dir, *args) == 0  # no --class: labels drawn, each name known after sampling
    first = {path.name: path.read_bytes() for path in folder.glob("*.png")}
    for path in sorted(folder.glob("*.png"))[::5]:
        path.unlink()  # three images lost
    listings = []
    real_scandir = sample_files.os.scandir
    monkeypatch.setattr(sample_files.os, "scandir", lambda path: listings.append(path) or real_scandir(path))
    assert sample(tiny_pipeline_dir, *args) == 0
    assert {path.name: path.read_bytes() for path in folder.glob("*.png")} == first  # remade exactly
    assert len(listings) <= 3  # a few listings per run (resume, pack the .npz), not one search per image (12)
    assert sample_files.drawn_label_images(folder).keys() == set(range(12))


def test_an_out_dir_of_a_run_directory_refuses_the_images_of_a_newer_checkpoint(tmp_path, monkeypatch):
    """Training on writes newer checkpoints under the same --model path: resuming must not mix their images in."""
    from nextscale.cli import common
    from nextscale.cli.sample_files import SETTINGS_FILE, check_out_dir_settings, run_checkpoint

    run, out = tmp_path / "run", tmp_path / "out"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-00000002.pt").touch()
    monkeypatch.setattr(common, "is_transformer_run", lambda path: Path(path) == run)

    def settings() -> dict:
        return {"--model": str(run), **run_checkpoint(run)}

    check_out_dir_settings(out, settings())  # a new folder: recorded
    assert json.loads((out / SETTINGS_FILE).read_text())["--checkpoint"] == "step-00000002.pt"
    (out / "0000_class1.png").touch()
    check_out_dir_settings(out, settings())  # the same checkpoint resumes
    (run / "checkpoints" / "step-00000004.pt").touch()
    with pytest.raises(ValueError, match=r"--checkpoint step-00000002\.pt, now step-00000004\.pt.*trained on since"):
        check_out_dir_settings(out, settings())
    (out / SETTINGS_FILE).write_text(json.dumps({"--model": str(run)}))  # recorded before checkpoints were
    check_out_dir_settings(out, settings())
    assert run_checkpoint(tmp_path / "pipe") == {}  # a pipeline folder records no checkpoint


def test_an_out_dir_records_which_float32_kernel_made_its_images(tiny_pipeline_dir):
    """`--dtype auto` may settle on oneDNN's float32 linear kernel (not the exact one): the record says so, so a
    resume under plain fp32 (or an `auto` that timed the other way) is refused instead of mixing kernels."""
    import argparse

    from nextscale import Pipeline
    from nextscale.cli.sample_files import image_settings

    args = argparse.Namespace(
        model=tiny_pipeline_dir, classes=None, prompt=None, negative_prompt=None, text_features=None, num=2,
        batch_size=2, device="cpu",
    )  # fmt: skip
    exact = Pipeline.from_pretrained(tiny_pipeline_dir)
    onednn = Pipeline.from_pretrained(tiny_pipeline_dir).use_precision("fp32", linear_kernel="onednn")
    assert image_settings(args, exact, {}, 0)["--dtype"] == "fp32"  # as folders written before this recorded it
    assert image_settings(args, onednn, {}, 0)["--dtype"] == "fp32 (onednn linear kernel)"


def test_show_scales_with_smooth_says_its_tiles_are_the_drawn_tokens(tiny_pipeline_dir, tmp_path, capsys):
    # --smooth's samples mix codes; the tokens (and so the tiles) are the multinomial draws, whose image differs
    assert sample(tiny_pipeline_dir, "--class", 1, "--seed", 0, "--smooth", "--show-scales", tmp_path / "s.png") == 0
    assert "(of the drawn tokens: the smoothed samples differ)" in capsys.readouterr().out
    assert sample(tiny_pipeline_dir, "--class", 1, "--seed", 0, "--show-scales", tmp_path / "s.png") == 0
    assert "differ" not in capsys.readouterr().out
