"""Prompt adherence on Fashion-MNIST scenes: quadrant judging, seen/unseen scores, evaluation prompts, and
`nextscale evaluate` on a tiny random 64 px text pipeline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli import main
from nextscale.data.scenes import caption_for, held_out_pairings, parse_caption, read_scene_index
from nextscale.evaluation.adherence import (
    EMPTY_THRESHOLD,
    AdherenceReport,
    evaluation_layouts,
    evaluation_prompts,
    judge_quadrants,
    prompt_layouts,
    quadrant_features,
    read_prompt_file,
    score_adherence,
    split_quadrants,
    sweep_cfg,
)
from nextscale.evaluation.generate import generate_prompt_images

SCENES = Path(__file__).resolve().parents[1] / "assets" / "scenes"


def load_scenes(split: str) -> tuple[torch.Tensor, list, list[bool]]:
    """The bundled scene assets: images (N, 1, 64, 64) in [0, 1], their layouts and unseen flags."""
    index = read_scene_index(SCENES / split)
    pixels = [np.array(Image.open(SCENES / split / record["image"])) for record in index["scenes"]]
    images = torch.from_numpy(np.stack(pixels)).float().div(255).unsqueeze(1)
    return images, [record["layout"] for record in index["scenes"]], [record["unseen"] for record in index["scenes"]]


def exact_judge(images: torch.Tensor, layouts: list) -> callable:
    """A fake classifier that knows every named quadrant of these scenes: one-hot logits of the true class."""
    quadrants = split_quadrants(images).mul(2).sub(1)  # the judge sees [-1, 1], as judge_quadrants hands it
    truth = {
        quadrants[row, place].numpy().tobytes(): item
        for row, layout in enumerate(layouts)
        for place, item in enumerate(layout)
        if item is not None
    }

    def classify(batch: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor([truth[q.numpy().tobytes()] for q in batch]), 10).float()

    return classify


def constant_judge(item: int, calls: list | None = None):
    def classify(batch: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(len(batch))
        return torch.nn.functional.one_hot(torch.full((len(batch),), item), 10).float()

    return classify


def canvas(levels: list[float]) -> torch.Tensor:
    """One (1, 1, 64, 64) scene whose four quadrants are flat at the given values in [0, 1]."""
    image = torch.zeros(1, 1, 64, 64)
    for place, level in enumerate(levels):
        row, col = divmod(place, 2)
        image[:, :, row * 32 : row * 32 + 32, col * 32 : col * 32 + 32] = level
    return image


# -------------------------------------------------------------------------------------------------- judging
@pytest.mark.parametrize("split", ["train", "test"])
def test_true_scenes_score_perfectly_with_an_exact_judge(split):
    images, layouts, unseen = load_scenes(split)
    report = score_adherence(images, layouts, exact_judge(images, layouts))
    assert report.overall.item_accuracy == report.overall.empty_accuracy == report.overall.scene_accuracy == 1.0
    assert report.overall.scenes == len(layouts)
    assert report.overall.items == sum(item is not None for layout in layouts for item in layout)
    assert report.overall.items + report.overall.empty == 4 * len(layouts)
    assert report.unseen.scenes == sum(unseen) and report.seen.scenes == len(layouts) - sum(unseen)
    assert report.overall == report.seen + report.unseen


def test_real_classifier_on_true_scenes_is_the_ceiling():
    # the tiny bundled classifier is not perfect: measured 80 of 88 items (90.9%) and 25 of 32 scenes here
    # (91.8% / 79.2% on 5000 held-out scenes from the full test split); empty quadrants are always right
    images, layouts, _ = load_scenes("test")
    report = score_adherence(images, layouts)
    assert report.overall.item_accuracy >= 0.85 and report.overall.scene_accuracy >= 0.7
    assert report.overall.empty_accuracy == 1.0


def test_real_items_are_far_above_the_empty_threshold():
    images, layouts, _ = load_scenes("test")
    verdicts = judge_quadrants(images, layouts, exact_judge(images, layouts))
    assert verdicts.brightness[~verdicts.named].max() == 0  # empty quadrants are black
    dimmest = verdicts.brightness[verdicts.named].min().item() * 255
    assert 9.5 < dimmest < 10.5  # a sandal: twice the 5/255 threshold
    assert not verdicts.empty[verdicts.named].any()


def test_empty_threshold_and_what_counts_as_right():
    layout = (7, None, 8, None)  # sneaker top left, bag bottom left
    calls = []
    # items in the named quadrants bright enough; the unnamed quadrants black or just below the threshold
    report = score_adherence(canvas([0.5, 4 / 255, 6 / 255, 0.0]), [layout], constant_judge(7, calls))
    assert calls == [2]  # only named, non-empty quadrants are classified
    assert (report.overall.items_correct, report.overall.empty_correct) == (1, 2)  # the bag is called a sneaker
    assert report.overall.scenes_correct == 0
    # a named item in a quadrant below the threshold is missing, whatever a classifier would say
    calls.clear()
    verdicts = judge_quadrants(canvas([4 / 255, 0, 0.5, 6 / 255]), [layout], constant_judge(8, calls))
    assert verdicts.empty.tolist() == [[True, True, False, False]] and calls == [1]
    assert verdicts.predicted.tolist() == [[-1, -1, 8, -1]]
    assert verdicts.correct.tolist() == [[False, True, True, False]]  # the unnamed bottom right is not empty
    # RGB images are judged on their mean over channels too
    rgb = canvas([0.5, 0, 0.5, 0]).expand(-1, 3, -1, -1).clone()
    rgb[:, 1:, :32, 32:] = 6 / 255  # top right: mean (0 + 6 + 6) / 3 = 4/255, below the threshold
    assert score_adherence(rgb, [layout], constant_judge(7)).overall.empty_correct == 2
    assert 4 / 255 < EMPTY_THRESHOLD < 6 / 255


def test_images_on_another_scale_are_refused_not_clamped_into_a_score():
    layout = (7, None, None, None)
    scene = canvas([0.5, 0, 0, 0])  # (1, 1, 64, 64) in [0, 1]
    assert score_adherence(scene, [layout], constant_judge(7)).overall.scene_accuracy == 1.0
    with pytest.raises(ValueError, match=r"float images in \[0, 1\], got torch.uint8; divide 8-bit pixels by 255"):
        score_adherence(scene.mul(255).to(torch.uint8), [layout], constant_judge(7))  # clamped: every item white
    with pytest.raises(ValueError, match=r"values in \[-1, 0\]; a tensor x in \[-1, 1\] is \(x \+ 1\) / 2"):
        score_adherence(scene.mul(2).sub(1), [layout], constant_judge(7))  # clamped: the item's darker half lost
    assert judge_quadrants(scene.add(5e-4), [layout], constant_judge(7)).correct[0, 0]  # float error is no scale


def test_seen_and_unseen_scenes_are_scored_apart():
    seen, unseen = (7, None, None, 8), (7, None, None, 3)  # sneaker top left + dress bottom right is held out
    assert not held_out_pairings(seen) and held_out_pairings(unseen) == [((7, 0), (3, 3))]
    images = torch.cat([canvas([0.5, 0, 0, 0.5]), canvas([0.5, 0, 0, 0])])  # the unseen scene lacks its dress
    report = score_adherence(images, [seen, unseen], constant_judge(7))  # sees a sneaker everywhere
    assert (report.seen.scenes, report.seen.items, report.seen.items_correct, report.seen.empty) == (1, 2, 1, 2)
    assert (report.unseen.scenes, report.unseen.items, report.unseen.items_correct) == (1, 2, 1)
    assert report.unseen.empty_accuracy == 1.0 and report.unseen.scene_accuracy == 0.0
    assert report.overall.item_accuracy == 0.5 and report.overall == report.seen + report.unseen
    perfect = score_adherence(images[1:], [(7, None, None, None)], constant_judge(7))
    assert perfect.overall.scene_accuracy == 1.0 and perfect.unseen.scenes == 0
    assert perfect.unseen.item_accuracy is None
    assert perfect.as_dict()["unseen"]["scene_accuracy"] is None  # JSON null, not a division by zero
    assert isinstance(perfect + report, AdherenceReport)


def test_quadrants_come_in_place_order_and_bad_shapes_are_refused():
    image = canvas([0.1, 0.2, 0.3, 0.4])
    assert split_quadrants(image).mean(dim=(2, 3, 4))[0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    features = quadrant_features(lambda quadrants: quadrants.mean(dim=(1, 2, 3)).unsqueeze(1).repeat(1, 2))
    assert features(image.repeat(3, 1, 1, 1)).shape == (3, 8)
    assert features(image)[0].tolist() == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4])
    with pytest.raises(ValueError, match="64x64"):
        split_quadrants(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="one layout per image"):
        score_adherence(image, [], constant_judge(0))


# -------------------------------------------------------------------------------------------------- prompts
def test_evaluation_prompts_are_fixed_balanced_and_parse_back():
    layouts = evaluation_layouts(200)
    assert layouts == evaluation_layouts(200) and evaluation_layouts(50) == layouts[:50]
    assert evaluation_layouts(50, seed=1) != layouts[:50]
    unseen = [bool(held_out_pairings(layout)) for layout in layouts]
    assert unseen == [index % 2 == 1 for index in range(200)]  # alternating: every prefix is balanced
    counts = [sum(item is not None for item in layout) for layout in layouts]
    assert set(counts) == {1, 2} and all(count == 2 for count, bad in zip(counts, unseen) if bad)
    prompts = evaluation_prompts(200)
    assert prompts[:3] == [caption_for(layout) for layout in layouts[:3]]
    assert [parse_caption(prompt) for prompt in prompts] == layouts  # the parse round trip
    assert prompt_layouts(prompts) == layouts


def test_max_items_bounds_the_layouts():
    single = evaluation_layouts(40, max_items=1)
    assert all(sum(item is not None for item in layout) == 1 for layout in single)
    assert not any(held_out_pairings(layout) for layout in single)  # one item cannot form a pairing
    four = evaluation_layouts(400, max_items=4)
    assert {sum(item is not None for item in layout) for layout in four} == {1, 2, 3, 4}
    assert sum(bool(held_out_pairings(layout)) for layout in four) == 200
    with pytest.raises(ValueError, match="max_items"):
        evaluation_layouts(10, max_items=5)


def test_prompt_files_and_unparsable_prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a bag in the top left\n\n  an ankle boot at the bottom right, a coat in the top left \n")
    prompts = read_prompt_file(path)
    assert prompts == ["a bag in the top left", "an ankle boot at the bottom right, a coat in the top left"]
    assert prompt_layouts(prompts) == [(8, None, None, None), (4, None, None, 9)]
    with pytest.raises(ValueError, match="prompt 2 cannot be judged"):
        prompt_layouts(["a bag in the top left", "a red apple"])


def test_a_prompt_file_saved_with_a_byte_order_mark_and_crlf_reads_as_its_prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes("\ufeffa bag in the top left\r\na dress in the top right\r\n".encode())  # Windows Notepad
    prompts = read_prompt_file(path)
    assert prompts == ["a bag in the top left", "a dress in the top right"]
    assert prompt_layouts(prompts) == [(8, None, None, None), (None, 3, None, None)]
    (tmp_path / "latin1.txt").write_bytes("a bag in the top left, très chic\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt is not UTF-8 text .* save it as UTF-8"):
        read_prompt_file(tmp_path / "latin1.txt")


# ----------------------------------------------------------------------------------- sampling and the CLI
@pytest.fixture(scope="module")
def text_pipe():
    from nextscale.sampling.text_pipeline import TextPipeline
    from nextscale.text import load_default_text_encoder
    from nextscale.tokenizer.config import TokenizerConfig
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.text_config import TextTransformerConfig
    from nextscale.transformer.text_model import TextScaleTransformer

    torch.manual_seed(0)
    sides = (1, 2, 4)  # 16x downsampling (five levels): a 4x4 latent, 64 px grayscale images
    tokenizer_config = TokenizerConfig(
        vocab_size=32,
        code_dim=4,
        base_channels=32,
        channel_multipliers=(1, 1, 1, 1, 1),
        num_res_blocks=1,
        in_channels=1,
        num_phi=2,
        scale_sides=sides,
    )
    assert tokenizer_config.image_size == 64
    transformer_config = TextTransformerConfig.from_depth(
        1, embed_dim=64, num_heads=1, vocab_size=32, code_dim=4, scale_sides=sides, text_dim=384
    )
    return TextPipeline(
        MultiScaleVQVAE(tokenizer_config), TextScaleTransformer(transformer_config), load_default_text_encoder()
    )


@pytest.fixture(scope="module")
def text_model_dir(text_pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("text-model") / "pipe"
    text_pipe.save_pretrained(path)
    return path


def test_prompt_sampling_keeps_prompt_order_and_batch_seeds(text_pipe):
    prompts = evaluation_prompts(3)
    results = list(sweep_cfg(text_pipe, prompts, [2.0, 0.0], constant_judge(0), batch_size=2, seed=3, progress=False))
    assert [result.cfg for result in results] == [2.0, 0.0] and results[0].adherence.overall.scenes == 3
    images = results[0].images
    assert images.shape == (3, 1, 64, 64) and 0 <= images.min() and images.max() <= 1
    second_batch = text_pipe(prompt=prompts[2:], seed=4, cfg=2.0, output_type="pt").images  # batch 1: seed 3 + 1
    assert torch.equal(images[2:], second_batch)
    assert torch.equal(generate_prompt_images(text_pipe, prompts[2:], seed=4, progress=False, cfg=2.0), second_batch)


def test_cli_evaluates_a_text_pipeline_with_a_cfg_sweep_and_fid(text_model_dir, tmp_path, capsys):
    report_path, samples = tmp_path / "report.json", tmp_path / "samples"
    argv = ["evaluate", "--model", str(text_model_dir), "--num-prompts", "4", "--cfg", "1", "3", "--seed", "0"]
    argv += ["--batch-size", "4", "--reference", str(SCENES / "test"), "--features", "classifier"]
    argv += ["--reference-cache", str(tmp_path / "ref.npz"), "--save-samples", str(samples), "--out", str(report_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "item accuracy" in printed and "real" in printed
    report = json.loads(report_path.read_text())
    assert report["conditioning"] == "text" and report["num_prompts"] == report["num_samples"] == 4
    assert report["prompt_split"] == {"seen": 2, "unseen": 2}
    assert report["reference_count"] == 32 and report["empty_threshold"] == EMPTY_THRESHOLD
    assert report["reference_adherence"]["overall"]["empty_accuracy"] == 1.0
    assert [row["cfg"] for row in report["results"]] == [1.0, 3.0]
    for row in report["results"]:
        assert set(row) == {"cfg", "adherence", "fid", "kid", "kid_std", "precision", "recall"} and row["fid"] >= 0
        assert set(row["adherence"]) == {"overall", "seen", "unseen"}
        overall = row["adherence"]["overall"]
        assert overall["scenes"] == 4 and overall["items"] + overall["empty"] == 16
        assert 0 <= overall["item_accuracy"] <= 1  # a random model scores near 0
    assert sorted(p.name for p in samples.iterdir()) == ["cfg-1", "cfg-3"]
    written = (samples / "cfg-1" / "prompts.txt").read_text().splitlines()
    assert written == evaluation_prompts(4) and (samples / "cfg-3" / "000003.png").is_file()


def test_cli_reads_a_prompt_file_with_several_images_per_prompt(text_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a bag in the top left\nan ankle boot in the bottom right\n")
    report_path = tmp_path / "report.json"
    argv = ["evaluate", "--model", str(text_model_dir), "--prompts", str(prompts), "--images-per-prompt", "2"]
    assert main([*argv, "--seed", "1", "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["prompts"] == str(prompts) and report["num_samples"] == 4
    assert report["prompt_split"] == {"seen": 2, "unseen": 0} and "reference_adherence" not in report
    assert len(report["results"]) == 1 and "fid" not in report["results"][0]
    assert report["results"][0]["adherence"]["unseen"]["item_accuracy"] is None
    # the report says what its scores measure: every accuracy it holds is defined beside it
    accuracies = {name for name in report["results"][0]["adherence"]["overall"] if name.endswith("_accuracy")}
    assert accuracies == {"item_accuracy", "empty_accuracy", "scene_accuracy"}
    assert accuracies <= set(report["adherence_definitions"]) and all(report["adherence_definitions"].values())


def test_cli_refusals_are_one_line(text_model_dir, tmp_path, capsys):
    from nextscale.presets import tiny
    from nextscale.sampling.pipeline import Pipeline
    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.transformer.model import ScaleTransformer

    model = ["evaluate", "--model", str(text_model_dir)]
    bad = tmp_path / "bad.txt"
    bad.write_text("a bag in the top left\na red apple\n")
    cases = [
        ([*model, "--num", "10"], "--num is for class-conditional models"),
        ([*model, "--prompts", str(bad)], "prompt 2 cannot be judged"),
        ([*model, "--prompts", str(bad), "--num-prompts", "4"], "leave them out with --prompts"),
        ([*model, "--max-items", "5"], "--max-items must be 1 to 4"),
    ]
    class_dir = tmp_path / "class-pipe"
    Pipeline(MultiScaleVQVAE(tiny()[0]), ScaleTransformer(tiny()[1])).save_pretrained(class_dir)
    cases += [
        (["evaluate", "--model", str(class_dir), "--num-prompts", "4"], "--num-prompts is for text-conditional"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        # one line from nextscale (transformers may print a progress bar while loading the text encoder)
        last = err.strip().splitlines()[-1]
        assert last.startswith("nextscale evaluate: error: ") and message in last and err.count("error") == 1, err


def test_adherence_of_a_model_run_equals_that_of_the_files_it_saves(text_model_dir, tmp_path, monkeypatch):
    """The judge reads 8-bit values, as the PNGs of --save-samples hold them: the same verdicts for the tensors and for
    their files. The stand-in judge names the prompts' item exactly when every pixel is an 8-bit value, so a judge
    that read the unrounded tensors (as it did) scores 0 where the files score 1."""
    from nextscale.data.sample_sets import SampleSet
    from nextscale.evaluation import classifier
    from nextscale.evaluation.adherence import AdherenceTally

    def on_the_8bit_grid(batch: torch.Tensor) -> torch.Tensor:  # (b, C, 32, 32) in [-1, 1] -> logits (b, 10)
        pixels = batch.double().add(1).mul(127.5)
        exact = (pixels - pixels.round()).abs().flatten(1).amax(dim=1) < 1e-3  # (b,)
        return torch.nn.functional.one_hot(torch.where(exact, 0, 1), 10).float()

    class Judge:  # what load_bundled_classifier gives the CLI: its ``logits`` judges
        logits = staticmethod(on_the_8bit_grid)

    monkeypatch.setattr(classifier, "load_bundled_classifier", lambda *args, **kwargs: Judge())
    prompts = tmp_path / "prompts.txt"
    layouts = [(0, None, None, 0), (0, 0, None, None), (None, None, 0, None), (None, 0, 0, 0)]  # t-shirts
    prompts.write_text("".join(caption_for(layout) + "\n" for layout in layouts))
    samples, report_path = tmp_path / "samples", tmp_path / "report.json"
    argv = ["evaluate", "--model", str(text_model_dir), "--prompts", str(prompts), "--seed", "0", "--batch-size", "3"]
    assert main([*argv, "--save-samples", str(samples), "--out", str(report_path)]) == 0
    [row] = json.loads(report_path.read_text())["results"]

    files = AdherenceTally(layouts, on_the_8bit_grid)
    for start, (images, _) in zip(range(0, 4, 3), SampleSet(samples).batches(3)):  # the PNGs, in [-1, 1]
        files(images, torch.arange(start, start + len(images)))
    assert row["adherence"] == files.report.as_dict()
    assert row["adherence"]["overall"]["item_accuracy"] == 1.0  # every quadrant judged, as 8-bit values
