"""`nextscale evaluate` of a text model a user trained on their own captioned images (not Fashion-MNIST scenes):
FID/KID/precision/recall against the captioned reference, the held-out loss the trainer logs, prompt adherence left
out with one line, and one-line refusals that come before the text encoder loads."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import evaluate, main
from nextscale.data.captions import open_caption_dataset
from nextscale.evaluation.fid import fid_from_features
from nextscale.evaluation.precision_recall import precision_recall
from nextscale.presets import tiny
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.text import load_default_text_encoder
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.text_model import TextScaleTransformer
from tiny_models import tiny_text_config

REPO = Path(__file__).resolve().parents[2]
SCENES_TEST = REPO / "tests" / "assets" / "scenes" / "test"
# Captions of the user's own images: nothing the Fashion-MNIST scene judge can read.
CAPTIONS = [
    "a red circle on a white background\na crimson disc",  # two captions: the first is sampled
    "a blue square",
    "a green triangle on grass",
    "two yellow stars",
    "a purple cloud at night",
    "an orange sun over the sea",
    "a grey cat on a sofa",
    "a black dog in the snow",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder():
    return load_default_text_encoder()


def text_pipeline(tokenizer_config: TokenizerConfig, encoder) -> TextPipeline:
    config = tiny_text_config(encoder.width, tokenizer_config, embed_dim=64)
    transformer = TextScaleTransformer(config)
    transformer.init_weights(init_head=1.0)  # non-trivial logits
    return TextPipeline(MultiScaleVQVAE(tokenizer_config), transformer, encoder)


@pytest.fixture(scope="module")
def pipe(encoder):
    """A random 16 px RGB text model (the tiny tokenizer): what `nextscale export` gives after training on own data."""
    torch.manual_seed(0)
    return text_pipeline(tiny()[0], encoder)


@pytest.fixture(scope="module")
def model_dir(pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("own-text-model") / "pipe"
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A caption folder: 8 noisy images of several sizes (cropped to the model's), each with a .txt caption."""
    folder = tmp_path_factory.mktemp("own-captions") / "test"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, caption in enumerate(CAPTIONS):
        colour = rng.integers(0, 256, size=3)
        pixels = np.clip(colour + rng.normal(0, 40, size=(30, 40 + 4 * index, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:02d}.png")
        (folder / f"{index:02d}.txt").write_text(caption + "\n")
    return folder


class ChannelMeans:
    """A tiny injected feature network: the mean of each channel (3-d features); records the batches it sees."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(images.shape))
        return images.mean(dim=(2, 3))


@pytest.fixture
def extractor(monkeypatch) -> ChannelMeans:
    network = ChannelMeans()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda *args, **kwargs: (network, "channel-means"))
    return network


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_fid_against_own_captioned_images(pipe, model_dir, reference, extractor, tmp_path, capsys):
    report_path, samples = tmp_path / "report.json", tmp_path / "samples"
    argv = ["evaluate", "--model", str(model_dir), "--reference", f"captions:{reference}", "--num", "6"]
    argv += ["--cfg", "2", "--seed", "0", "--batch-size", "4", "--save-samples", str(samples)]
    argv += ["--out", str(report_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "prompt adherence: not measured (prompt adherence judges 64x64" in printed and "FID" in printed

    report = json.loads(report_path.read_text())
    assert report["num_samples"] == report["reference_count"] == report["num_prompts"] == 6
    assert report["feature_network"] == "channel-means" and "64x64" in report["adherence_skipped"]
    [row] = report["results"]
    assert set(row) == {"cfg", "fid", "kid", "kid_std", "precision", "recall"} and row["cfg"] == 2.0
    # 6 reference images, then 6 samples (4 + 2), all at the model's 16 px
    assert sum(shape[0] for shape in extractor.shapes) == 12
    assert {shape[1:] for shape in extractor.shapes} == {(3, 16, 16)}

    # the same numbers from the first 6 reference images and one sample of each one's first caption
    first = [caption.splitlines()[0] for caption in CAPTIONS[:6]]
    assert (samples / "prompts.txt").read_text().splitlines() == first
    assert sorted(p.name for p in samples.glob("*.png")) == [f"{i:06d}.png" for i in range(6)]
    dataset = open_caption_dataset(reference, 16, channels=3, train=False)
    real = torch.stack([dataset[i][0] for i in range(6)]).mean(dim=(2, 3)).double().numpy()
    # batch b of --batch-size 4 is drawn with seed 0 + b
    generated = [
        pipe(prompt=first[start : start + 4], seed=b, cfg=2.0, output_type="pt") for b, start in ((0, 0), (1, 4))
    ]
    fake = torch.cat([out.images for out in generated]).mul(2).sub(1).mean(dim=(2, 3)).double().numpy()
    assert row["fid"] == pytest.approx(fid_from_features(fake, real), rel=1e-6)
    expected = precision_recall(real, fake)
    assert (row["precision"], row["recall"]) == pytest.approx((expected.precision, expected.recall))


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_reference_cache_of_captioned_images_that_changed_is_refused(model_dir, reference, extractor, tmp_path, capsys):
    """Same caption folder, same count, another image: the cached features are not its (the key had no digest of the
    files, and the stale features were reused). An RGB model's cache serves a --samples run of its files too."""
    import shutil

    folder = tmp_path / "captions"
    shutil.copytree(reference, folder)
    cache, samples = tmp_path / "ref.npz", tmp_path / "samples"
    argv = ["evaluate", "--model", str(model_dir), "--reference", f"captions:{folder}", "--reference-cache", str(cache)]
    argv += ["--seed", "0", "--batch-size", "8"]
    assert main([*argv, "--save-samples", str(samples)]) == 0
    assert main(argv) == 0  # unchanged: read from the cache
    assert sum(shape[0] for shape in extractor.shapes) == 3 * len(CAPTIONS)  # the reference once, samples twice
    files = [
        "evaluate",
        "--samples",
        str(samples),
        "--reference",
        f"captions:{folder}",
        "--reference-cache",
        str(cache),
    ]
    assert main(files) == 0
    assert sum(shape[0] for shape in extractor.shapes) == 4 * len(CAPTIONS)  # the samples alone: the cache served
    Image.new("RGB", (30, 30), (0, 0, 0)).save(folder / "03.png")  # another image under the same name
    capsys.readouterr()
    assert main(argv) == 2
    assert "pass another cache file or delete it" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_captioned_reference_images_the_header_check_refused_are_named_in_the_report(
    model_dir, reference, extractor, tmp_path
):
    """A tiny and an unreadable captioned image are left out when the caption folder is indexed; the report named
    neither (only the log did)."""
    import shutil

    folder = tmp_path / "captions"
    shutil.copytree(reference, folder)
    Image.new("RGB", (1, 1)).save(folder / "tiny.png")
    (folder / "junk.png").write_bytes(b"not an image")
    for name in ("tiny", "junk"):
        (folder / f"{name}.txt").write_text("a picture\n")
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model_dir), "--reference", f"captions:{folder}", "--num", "4"]
    assert main([*argv, "--batch-size", "4", "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["reference_left_out"] == [
        {"file": str(folder / "junk.png"), "reason": "corrupt"},
        {"file": str(folder / "tiny.png"), "reason": "tiny"},
    ]
    assert report["warnings"][0].startswith(f"left out 2 of the 10 reference files of captions:{folder}")


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_a_64px_model_with_other_captions_skips_adherence_instead_of_failing(encoder, reference, extractor, tmp_path):
    torch.manual_seed(1)
    config = TokenizerConfig(
        vocab_size=32,
        code_dim=4,
        base_channels=32,
        channel_multipliers=(1, 1, 1, 1, 1),
        num_res_blocks=1,
        in_channels=1,
        num_phi=2,
        scale_sides=(1, 2, 4),
    )
    assert config.image_size == 64  # the scene judge's size, but these captions are no scenes
    model = tmp_path / "pipe64"
    text_pipeline(config, encoder).save_pretrained(model)
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--model", str(model), "--reference", str(reference), "--cfg", "1", "3", "--seed", "0"]
    assert main([*argv, "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert "cannot parse 'a red circle on a white background'" in report["adherence_skipped"]
    assert report["num_samples"] == report["reference_count"] == len(CAPTIONS)  # --num: all, up to 2000
    assert [row["cfg"] for row in report["results"]] == [1.0, 3.0]
    assert all("adherence" not in row and row["fid"] >= 0 for row in report["results"])
    assert "reference_adherence" not in report and "prompt_split" not in report


def test_held_out_loss_of_a_text_model_equals_the_trainers_eval_line(model_dir, tmp_path):
    tokens, run, exported, report_path = (tmp_path / name for name in ("tokens", "run", "exported", "loss.json"))
    data = f"captions:{SCENES_TEST}"  # 32 captioned scenes, resized to the tiny tokenizer's 16 px
    tokenize = ["tokenize", "--tokenizer", str(model_dir), "--data", data, "--split", "all", "--out", str(tokens)]
    assert main([*tokenize, "--no-progress"]) == 0  # all of it: a held-out folder of its own
    train = ["train", "--tokenizer", str(model_dir), "--tokens", str(tokens), "--eval-tokens", str(tokens)]
    train += ["--text-encoder", "default", "--preset", "star-tiny", "--run-dir", str(run), "--steps", "2"]
    train += ["--batch-size", "8", "--lr", "3e-3", "--warmup", "1", "--eval-every", "2", "--eval-samples", "100"]
    assert main([*train, "--ema-decay", "none", "--preview-every", "none", "--no-progress"]) == 0
    assert main(["export", "--run", str(run), "--out", str(exported)]) == 0

    argv = ["evaluate", "--model", str(exported), "--loss", "--tokens", str(tokens), "--batch-size", "12"]
    assert main([*argv, "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [line for line in logged if line["split"] == "eval"][-1]
    assert report["conditioning"] == "text" and report["num_samples"] == 32 and report["scale_sides"] == [1, 2, 4]
    assert report["L_avg"] == pytest.approx(logged["loss"], rel=1e-5)
    assert report["scale_loss"] == pytest.approx([logged[f"scale_loss/scale{k}"] for k in range(3)], rel=1e-5)
    assert report["token_error"] == pytest.approx([logged[f"token_error/scale{k}"] for k in range(3)], rel=1e-5)
    assert report["L_last"] == report["scale_loss"][-1] and report["Err_last"] == report["token_error"][-1]

    run_report = tmp_path / "run_loss.json"  # the run directory itself (no sampling flag typed: none refused)
    assert main(["evaluate", "--model", str(run), *argv[3:], "--out", str(run_report)]) == 0
    run_loss = json.loads(run_report.read_text())
    assert run_loss["L_avg"] == report["L_avg"]
    # which weights were measured is in the report, not only in a stderr line (--ema-decay none: the raw ones)
    assert (run_loss["model_source"], run_loss["checkpoint_step"], run_loss["weights"]) == ("training run", 2, "raw")
    assert run_loss["checkpoint"] == "checkpoints/step-00000002.pt"
    # the exported folder records the same checkpoint, step and weights (transformer/export.json)
    assert report["model_source"] == "exported pipeline folder"
    assert (report["checkpoint"], report["checkpoint_step"], report["weights"]) == (run_loss["checkpoint"], 2, "raw")

    assert main([*argv, "--num", "5", "--out", str(report_path)]) == 0  # --num caps the sequences
    assert json.loads(report_path.read_text())["num_samples"] == 5


class EncoderLoaded(Exception):
    """Raised if a refusal loaded the text encoder first (not caught by the CLI: the test fails)."""


def test_refusals_are_one_line_and_come_before_the_text_encoder_loads(
    model_dir, reference, tmp_path, monkeypatch, capsys
):
    from nextscale.sampling import text_pipeline as text_pipeline_module

    def refuse_to_load(*args, **kwargs):
        raise EncoderLoaded("the text encoder was loaded before the refusal")

    monkeypatch.setattr(text_pipeline_module, "load_text_encoder_folder", refuse_to_load)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\n")
    model = ["evaluate", "--model", str(model_dir)]
    own = [*model, "--reference", f"captions:{reference}"]
    cases = [
        (model, "prompt adherence judges 64x64 Fashion-MNIST scenes; this model makes 16x16 images, and without"),
        ([*model, "--prompts", str(prompts)], "give --reference captions:PATH (FID against your own captioned"),
        ([*model, "--num", "10"], "--num is for class-conditional models, and for text models with --reference"),
        ([*model, "--baseline"], "--baseline is for class-conditional models"),
        ([*model, "--reference-cache", str(tmp_path / "r.npz")], "give --reference captions:PATH too"),
        ([*model, "--reference", "fashion-mnist"], "a text model is compared with captioned images"),
        ([*model, "--reference", f"captions:{tmp_path / 'missing'}"], "does not exist"),
        ([*own, "--num", "2"], "--num must be at least 4"),
        ([*own, "--features", "classifier"], "--features classifier reads 32x32 images"),
        ([*own, "--images-per-prompt", "2"], "--images-per-prompt is for --prompts and --num-prompts"),
        ([*own, "--prompts", str(prompts), "--num", "6"], "leave --num out"),
        ([*model, "--loss"], "give both --loss and --tokens DIR"),
        ([*model, "--loss", "--tokens", str(tmp_path / "none")], "is not a token folder"),
        ([*own, "--loss", "--tokens", str(tmp_path / "none")], "--reference is for sample evaluation, not for --loss"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("nextscale evaluate: error: ") and message in err, (argv, err)
