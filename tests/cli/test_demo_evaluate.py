"""`nextscale demo` and `nextscale evaluate` end to end on a small random 32 px, 10-class model."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.sampling.pipeline import Pipeline
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.config import TransformerConfig
from nextscale.transformer.model import ScaleTransformer

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def save_random_model(path, in_channels: int, num_classes: int):
    """A random 32 px pipeline folder (scales 1, 2, 4, 8) of the given image channels and classes."""
    torch.manual_seed(0)
    sides = (1, 2, 4, 8)
    config = TokenizerConfig(
        vocab_size=32, code_dim=4, base_channels=32, channel_multipliers=(1, 1, 1), num_res_blocks=1, num_phi=2
    )
    tokenizer = MultiScaleVQVAE(dataclasses.replace(config, in_channels=in_channels, scale_sides=sides))
    transformer = ScaleTransformer(
        TransformerConfig.from_depth(
            1, embed_dim=32, num_heads=1, num_classes=num_classes, vocab_size=32, code_dim=4, scale_sides=sides
        )
    )
    Pipeline(tokenizer, transformer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model") / "pipe", in_channels=1, num_classes=10)


def test_demo_writes_a_labelled_grid_and_an_edit_example(model_dir, tmp_path, capsys):
    assert (
        main(["demo", "--model", str(model_dir), "--out-dir", str(tmp_path), "--seeds", "2", "--class", "7", "9"]) == 0
    )
    printed = capsys.readouterr().out
    assert "samples.png" in printed and "inpaint.png" in printed
    grid = Image.open(tmp_path / "samples.png")
    assert grid.width > 2 * 32 and grid.height > 2 * 32
    assert Image.open(tmp_path / "inpaint.png").width > 4 * 32


def test_evaluate_reports_fid_precision_recall_and_class_consistency(model_dir, tmp_path):
    report_path = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--num",
            "20",
            "--batch-size",
            "10",
            "--reference",
            f"fashion-mnist:{ASSETS}",
            "--features",
            "classifier",
            "--baseline",
            "--out",
            str(report_path),
            "--seed",
            "0",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["num_samples"] == 20 and report["reference_count"] == 100
    assert report["fid"] > report["fid_real_baseline"] >= 0  # random model vs real held-out images
    assert 0 <= report["precision"] <= 1 and 0 <= report["class_consistency"] <= 1
    assert 1.0 <= report["classifier_inception_score"] <= 10.0
    assert len(report["class_consistency_per_class"]) == 10  # 20 class-balanced samples: 2 per class


def test_demo_with_a_missing_model_is_one_line(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "none"), "--out-dir", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_demo_zoom_enlarges_the_pictures_and_rejects_nonsense(model_dir, tmp_path, capsys):
    base = ["demo", "--model", str(model_dir), "--seeds", "1", "--class", "3", "--seed", "0"]
    assert main([*base, "--zoom", "1", "--out-dir", str(tmp_path / "z1")]) == 0
    assert main([*base, "--zoom", "3", "--out-dir", str(tmp_path / "z3")]) == 0
    small, large = Image.open(tmp_path / "z1" / "samples.png"), Image.open(tmp_path / "z3" / "samples.png")
    # one 32 px tile framed by 2 px padding, plus the label strip below it
    assert large.height - small.height == 2 * 32
    capsys.readouterr()
    assert main([*base, "--zoom", "0", "--out-dir", str(tmp_path / "z0")]) == 2
    assert "--zoom" in capsys.readouterr().err


def test_demo_train_runs_the_recipe_end_to_end_and_samples_from_the_new_model(tmp_path, monkeypatch, capsys):
    from nextscale.cli import demo_recipe

    # the real recipe's stages and flags, shrunk to a few steps on the bundled 200-image subset
    short = {"steps": 2, "batch-size": 4, "eval-every": 1000, "preview-every": 1000, "checkpoint-every": 1000}
    for recipe in (demo_recipe.TOKENIZER_ARGS, demo_recipe.TRANSFORMER_ARGS):
        for name, value in short.items():
            monkeypatch.setitem(recipe, name, value)
    monkeypatch.setitem(demo_recipe.TOKENIZER_ARGS, "disc-start", 1)
    run_dir = tmp_path / "runs"
    argv = ["demo", "--train", "--data", str(ASSETS), "--run-dir", str(run_dir), "--out-dir", str(tmp_path / "out")]
    assert main([*argv, "--seeds", "1", "--class", "0"]) == 0
    printed = capsys.readouterr().out
    for stage in ("train-tokenizer", "tokenize", "train", "export"):
        assert f"$ nextscale {stage} " in printed
    assert (run_dir / "pipeline" / "pipeline.json").is_file() and (tmp_path / "out" / "samples.png").is_file()
    # re-running resumes: finished stages are not trained again and the tokens are reused
    assert main([*argv, "--seeds", "1", "--class", "0"]) == 0
    assert "$ nextscale tokenize" not in capsys.readouterr().out


def test_evaluate_reconstructions_reuses_the_reference_cache(model_dir, tmp_path, monkeypatch):
    from nextscale.evaluation import features

    cache = tmp_path / "reference.npz"
    base = ["evaluate", "--model", str(model_dir), "--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier"]
    base += ["--num", "20", "--reference-cache", str(cache)]
    assert main([*base, "--out", str(tmp_path / "samples.json"), "--seed", "0"]) == 0
    assert cache.is_file()
    calls = []
    real_compute, real_stream = features.compute_features, features.stream_features
    monkeypatch.setattr(features, "compute_features", lambda *a, **k: calls.append("ref") or real_compute(*a, **k))
    monkeypatch.setattr(features, "stream_features", lambda *a, **k: calls.append("recon") or real_stream(*a, **k))
    assert main([*base, "--reconstructions", "--out", str(tmp_path / "recon.json")]) == 0
    assert calls == ["recon"]  # only the reconstructions were featurised: the reference came from the cache
    samples, recon = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("samples", "recon"))
    assert recon["measured"] == "tokenizer reconstructions" and "sampling" not in recon
    assert samples["reference_count"] == recon["reference_count"] == 100
    assert recon["fid"] >= 0 and 0 <= recon["class_consistency"] <= 1


def test_reference_cache_of_another_setting_is_refused(tmp_path):
    import numpy as np

    from nextscale.evaluation.features import cached_features

    def batches():
        return [torch.zeros(4, 1, 8, 8)]

    def extractor(images):
        return images.flatten(1)[:, :3]

    cache = tmp_path / "ref.npz"
    first = cached_features(extractor, batches, cache, key={"size": 8})
    np.testing.assert_array_equal(cached_features(extractor, lambda: [], cache, key={"size": 8}), first)
    with pytest.raises(ValueError, match="pass another cache file"):
        cached_features(extractor, batches, cache, key={"size": 16})
    cache.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a feature cache"):
        cached_features(extractor, batches, cache, key={"size": 8})


@pytest.fixture(scope="module")
def own_model_dir(tmp_path_factory):
    """A random 3-class RGB model: what `nextscale export` gives a user who trained on their own folder."""
    return save_random_model(tmp_path_factory.mktemp("own-model") / "pipe", in_channels=3, num_classes=3)


def test_evaluate_of_an_own_images_model_asks_for_its_reference_and_skips_a_corrupt_one(
    own_model_dir, tmp_path, capsys
):
    base = ["evaluate", "--model", str(own_model_dir), "--num", "6", "--features", "classifier", "--seed", "0"]
    assert main(base) == 2  # not silently against Fashion-MNIST's 10,000 grayscale test images
    assert "was not trained on Fashion-MNIST, the default reference; pass --reference DIR" in capsys.readouterr().err
    for label, name in enumerate(("cars", "faces", "fruit")):
        (tmp_path / "real" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (40, 40), (80 * label, 60 * i, 20)).save(tmp_path / "real" / name / f"{i}.png")
    (tmp_path / "real" / "fruit" / "broken.png").write_bytes(b"not an image at all")
    report_path = tmp_path / "report.json"
    assert main([*base, "--reference", str(tmp_path / "real"), "--out", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["reference_count"] == 6  # the corrupt file left out, not doubled
    # the Fashion-MNIST classifier sees colour images in grayscale: said, so a colour-blind FID is not taken as one
    assert "which sees these colour images in grayscale: colour is not measured" in capsys.readouterr().err
    assert main([*base, "--reference", str(tmp_path / "real"), "--bad-images", "fail"]) == 2
    assert "broken.png (unreadable)" in capsys.readouterr().err


def test_evaluate_loss_runs_in_the_requested_dtype_and_refuses_sampling_flags(model_dir, tmp_path, capsys):
    tokens = tmp_path / "tokens"
    argv = ["tokenize", "--tokenizer", str(model_dir), "--data", f"fashion-mnist:{ASSETS}", "--split", "test"]
    assert main([*argv, "--out", str(tokens), "--no-progress"]) == 0
    base = ["evaluate", "--loss", "--model", str(model_dir), "--tokens", str(tokens), "--num", "20"]
    reports = {}
    for dtype in ("fp32", "bf16"):  # bf16 casts the transformer's linear weights: it crashed outside autocast
        out = tmp_path / f"{dtype}.json"
        assert main([*base, "--dtype", dtype, "--out", str(out)]) == 0
        reports[dtype] = json.loads(out.read_text())
    assert reports["fp32"]["dtype"] == "fp32" and reports["bf16"]["dtype"] == "bf16"
    assert reports["bf16"]["L_avg"] == pytest.approx(reports["fp32"]["L_avg"], rel=0.05)
    capsys.readouterr()
    for flag in (["--cfg", "3"], ["--seed", "1"], ["--top-k", "5"], ["--smooth"]):  # teacher forcing samples nothing
        assert main([*base, *flag]) == 2
        assert f"error: {flag[0]} " in capsys.readouterr().err


def test_a_model_scores_as_the_sample_files_it_writes(model_dir, tmp_path):
    """--features classifier and the class judge read 8-bit values, as the Inception does: the same numbers for the
    tensors and for their PNGs (the classifier read unrounded tensors: FID 420.77 against 420.85 for the files)."""
    reference = ["--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier"]
    model_run = ["evaluate", "--model", str(model_dir), "--num", "40", "--batch-size", "8", "--seed", "0", *reference]
    assert main([*model_run, "--save-samples", str(tmp_path / "s"), "--out", str(tmp_path / "model.json")]) == 0
    assert main(["evaluate", "--samples", str(tmp_path / "s"), *reference, "--out", str(tmp_path / "files.json")]) == 0
    model, files = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("model", "files"))
    for name in ("fid", "kid", "precision", "recall", "class_consistency", "classifier_inception_score"):
        assert model[name] == pytest.approx(files[name], rel=1e-6, abs=1e-9), name


def test_a_fashion_mnist_reference_cache_of_a_model_run_serves_a_samples_run(model_dir, tmp_path, monkeypatch):
    """A gray model reads Fashion-MNIST as gray, --samples as RGB (the gray channel three times): the same features,
    as the networks see gray as RGB anyway. The keys said channels 1 and 3, and the --samples run refused the cache
    (an 18-minute Inception recompute on a CPU)."""
    from nextscale.evaluation import features

    cache = tmp_path / "fm.npz"
    reference = ["--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier", "--reference-cache", str(cache)]
    model_run = ["evaluate", "--model", str(model_dir), "--num", "20", "--batch-size", "10", "--seed", "0", *reference]
    assert main([*model_run, "--save-samples", str(tmp_path / "s"), "--out", str(tmp_path / "model.json")]) == 0
    assert cache.is_file()

    def no_recompute(*args, **kwargs):
        raise AssertionError("the reference features were computed again instead of read from the cache")

    monkeypatch.setattr(features, "compute_features", no_recompute)
    assert main(["evaluate", "--samples", str(tmp_path / "s"), *reference, "--out", str(tmp_path / "files.json")]) == 0
    model, files = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("model", "files"))
    assert files["fid"] == pytest.approx(model["fid"], rel=1e-6)


def test_reference_cache_keys_agree_exactly_when_the_images_read_are_the_same(tmp_path):
    """Fashion-MNIST read as gray or as RGB: one key. A folder read as gray or as RGB may hold colour: two keys."""
    from nextscale.cli.evaluate_reference import reference_key
    from nextscale.data.fashion_mnist import FashionMNIST
    from nextscale.data.images import ImageFolderDataset

    spec = f"fashion-mnist:{ASSETS}"
    gray, rgb = (FashionMNIST(root=ASSETS, split="test", size=32, channels=channels) for channels in (1, 3))
    assert torch.equal(gray[0][0].expand(3, -1, -1), rgb[0][0])
    assert reference_key(spec, gray, 32, 1, "net") == reference_key(spec, rgb, 32, 3, "net")
    assert reference_key(spec, gray, 32, 1, "net") != reference_key(spec, gray, 28, 1, "net")
    assert reference_key(spec, gray, 32, 1, "net") != reference_key(spec, gray, 32, 1, "other net")
    for name in ("a", "b"):
        (tmp_path / "ref" / name).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (32, 32), (200, 40 * index, 10)).save(tmp_path / "ref" / name / f"{index}.png")
    folder = str(tmp_path / "ref")
    as_gray, as_rgb = (ImageFolderDataset(folder, size=32, train=False, channels=channels) for channels in (1, 3))
    assert reference_key(folder, as_gray, 32, 1, "net") != reference_key(folder, as_rgb, 32, 3, "net")


@pytest.mark.parametrize("form", ["folder", "npz"])
def test_evaluate_samples_num_takes_images_spread_through_a_class_ordered_set(tmp_path, form):
    """`sample --class all --out-dir` writes class by class: --num 10 of 30 must keep all ten classes, not the
    first ten images (classes 0-3)."""
    from nextscale.data.sample_sets import NpzImageWriter

    labels = [index // 3 for index in range(30)]  # 0, 0, 0, 1, 1, 1, ...
    images = torch.rand(30, 1, 32, 32) * 2 - 1
    if form == "folder":
        (tmp_path / "s").mkdir()
        for index, (picture, label) in enumerate(zip(images, labels)):
            Image.fromarray(((picture[0] + 1) * 127.5).round().byte().numpy()).save(
                tmp_path / "s" / f"{index:04d}_class{label}.png"
            )
        samples = tmp_path / "s"
    else:
        samples = tmp_path / "s.npz"
        with NpzImageWriter(samples, 30, 32) as writer:
            writer.add(images[:16], labels[:16])
            writer.add(images[16:], labels[16:])
    argv = ["evaluate", "--samples", str(samples), "--reference", f"fashion-mnist:{ASSETS}", "--features", "classifier"]
    assert main([*argv, "--num", "10", "--batch-size", "4", "--out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["num_samples"] == 10 and None not in report["class_consistency_per_class"]


def test_save_samples_refuses_a_folder_of_an_earlier_run(model_dir, tmp_path, capsys):
    """A run writes images 0..N-1 over an earlier run's and leaves the rest: `--samples` would then mix two runs."""
    argv = ["evaluate", "--model", str(model_dir), "--num", "8", "--features", "classifier"]
    for name in ("000039_class9.png", "000003.png", "cfg-1.5"):
        folder = tmp_path / name.replace(".", "-")
        folder.mkdir()
        (folder / name).mkdir() if name.startswith("cfg-") else (folder / name).write_bytes(b"")
        assert main([*argv, "--save-samples", str(folder)]) == 2
        assert f"already holds samples ({name}); this run would mix" in capsys.readouterr().err


def test_reference_cache_of_a_folder_whose_images_changed_is_refused(model_dir, tmp_path, capsys):
    """Same folder, same count, other images: the cached features are not theirs."""

    def write_reference(seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for name in ("a", "b"):
            (tmp_path / "ref" / name).mkdir(parents=True, exist_ok=True)
            for index in range(3):
                pixels = torch.randint(0, 256, (32 + 4 * seed, 32 + 4 * seed), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(tmp_path / "ref" / name / f"{index}.png")

    write_reference(0)
    argv = ["evaluate", "--model", str(model_dir), "--num", "6", "--features", "classifier", "--reference"]
    argv += [str(tmp_path / "ref"), "--reference-cache", str(tmp_path / "ref.npz")]
    assert main(argv) == 0
    assert main(argv) == 0  # unchanged: read from the cache
    write_reference(1)
    capsys.readouterr()
    assert main(argv) == 2
    assert "pass another cache file or delete it" in capsys.readouterr().err


def test_evaluate_samples_refuses_a_stray_file_before_any_features(tmp_path, monkeypatch, capsys):
    """A file of another size (or no image) at the end of the folder failed only after the reference's features and
    every sample's before it (hours of Inception on a CPU for 50,000 samples)."""
    from nextscale.cli import evaluate

    def no_network(*args, **kwargs):
        raise AssertionError("the feature network was loaded before the sample files were checked")

    monkeypatch.setattr(evaluate, "load_feature_extractor", no_network)
    (tmp_path / "s").mkdir()
    for index in range(6):
        Image.new("L", (32, 32), 40 * index).save(tmp_path / "s" / f"{index:04d}_class{index}.png")
    argv = ["evaluate", "--samples", str(tmp_path / "s"), "--reference", f"fashion-mnist:{ASSETS}"]
    for name, fault, expected in (
        ("0006_class6.png", "size", "is 40x40; the samples must be square, all one size"),
        ("0007_class7.png", "junk", "cannot be read"),
    ):
        if fault == "size":
            Image.new("L", (40, 40)).save(tmp_path / "s" / name)
        else:
            (tmp_path / "s" / "0006_class6.png").unlink()
            (tmp_path / "s" / name).write_bytes(b"not an image")
        assert main([*argv, "--features", "classifier"]) == 2
        assert f"{name} {expected}" in capsys.readouterr().err


def test_demo_edits_the_fashion_mnist_example_only_with_a_fashion_mnist_model(tmp_path, capsys):
    # A 10-class model of other classes (CIFAR-10 names) had the sneaker example "edited towards 'truck'".
    path = save_random_model(tmp_path / "cifar", in_channels=3, num_classes=10)
    index = json.loads((path / "pipeline.json").read_text())
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (path / "pipeline.json").write_text(json.dumps({**index, "class_names": names}))
    argv = ["demo", "--model", str(path), "--no-text", "--seeds", "1", "--class", "0", "--out-dir", str(tmp_path / "o")]
    assert main(argv) == 0
    assert "editing: skipped (the example is a Fashion-MNIST sneaker" in capsys.readouterr().out
    assert (tmp_path / "o" / "samples.png").is_file() and not (tmp_path / "o" / "inpaint.png").exists()
