import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from nextscale.cli import COMMANDS, main
from nextscale.data import scenes as scenes_module
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.captions import open_caption_dataset
from nextscale.data.fashion_mnist import load_fashion_mnist, prepare_images
from nextscale.data.scenes import (
    HELD_OUT_PAIRINGS,
    ITEM_NAMES,
    PLACE_PAIRS,
    PLACES,
    SceneConfig,
    SceneDataset,
    all_layouts,
    build_scenes,
    caption_for,
    held_out_pairings,
    is_held_out,
    paraphrase_for,
    parse_caption,
    read_scene_index,
)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FASHION_DIR = ASSETS / "fashion_mnist"
SCENE_ASSETS = ASSETS / "scenes"


@pytest.fixture(scope="module")
def train_scenes() -> SceneDataset:
    return SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=3000, seed=0)


@pytest.fixture(scope="module")
def test_scenes() -> SceneDataset:
    return SceneDataset.from_fashion_mnist(FASHION_DIR, "test", count=1000, seed=0)


@pytest.mark.parametrize(
    "layout, caption",
    [
        ((7, None, None, None), "a sneaker in the top left"),
        ((None, None, None, 9), "an ankle boot in the bottom right"),
        ((None, 0, None, None), "a t-shirt in the top right"),
        ((7, None, None, 8), "a sneaker in the top left and a bag in the bottom right"),
        ((None, 9, 1, None), "an ankle boot in the top right and a trouser in the bottom left"),
        (
            (0, 9, 5, 5),
            "a t-shirt in the top left and an ankle boot in the top right and a sandal in the bottom left "
            "and a sandal in the bottom right",
        ),
        (
            (2, 3, 4, 6),
            "a pullover in the top left and a dress in the top right and a coat in the bottom left "
            "and a shirt in the bottom right",
        ),
    ],
)
def test_canonical_caption(layout, caption):
    assert caption_for(layout) == caption
    assert parse_caption(caption) == layout


def test_parse_inverts_caption_for_every_layout():
    layouts = list(all_layouts())
    assert len(layouts) == 11**4 - 1
    for layout in layouts:
        assert parse_caption(caption_for(layout)) == layout


def test_parse_reads_paraphrases():
    generator = np.random.default_rng(0)
    layouts = list(all_layouts())
    for index in generator.choice(len(layouts), size=500, replace=False):
        layout = layouts[index]
        assert parse_caption(paraphrase_for(layout, generator)) == layout
    assert parse_caption("  A Sandal at the top left,  a bag in the TOP RIGHT. ") == (5, 8, None, None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty caption"),
        ("a cat in the top left", "cannot parse 'a cat in the top left'"),
        ("a bag in the middle", "cannot parse"),
        ("a bag in the top left and", "cannot parse"),
        ("a bag in the top left and a coat in the top left", "names the top left twice"),
        ("two bags on the left", "cannot parse"),
    ],
)
def test_parse_rejects_other_text(text, message):
    with pytest.raises(ValueError, match=message):
        parse_caption(text)


@pytest.mark.parametrize("layout", [(None, None, None, None), (1, 2, 3), (10, None, None, None), (True, 1, 2, 3)])
def test_bad_layouts_are_refused(layout):
    with pytest.raises(ValueError):
        caption_for(layout)


def test_held_out_rule():
    assert len(HELD_OUT_PAIRINGS) == len(PLACE_PAIRS) * len(ITEM_NAMES)  # 60 of 600 pairings: 10%
    per_item_place = Counter(end for pairing in HELD_OUT_PAIRINGS for end in pairing)
    assert set(per_item_place.values()) == {len(PLACES) - 1}  # every (item, place): one per other place
    for k, (p, q) in enumerate(PLACE_PAIRS):
        partners = {a: b for (a, pa), (b, qb) in HELD_OUT_PAIRINGS if (pa, qb) == (p, q)}
        assert sorted(partners) == sorted(partners.values()) == list(range(10))  # a bijection per place pair
        assert all(b == (3 * a + k) % 10 for a, b in partners.items())
    assert is_held_out(0, 0, 0, 1) and is_held_out(0, 1, 0, 0)
    assert held_out_pairings((0, 0, None, None)) == [((0, 0), (0, 1))]
    assert held_out_pairings((0, 1, None, None)) == []


def _quadrant(image: torch.Tensor, place: int) -> torch.Tensor:
    row, col = divmod(place, 2)
    return image[:, row * 32 : (row + 1) * 32, col * 32 : (col + 1) * 32]


def test_quadrants_hold_exactly_the_padded_items(train_scenes):
    images, _ = load_fashion_mnist(FASHION_DIR, "train")
    for index in range(50):
        scene = train_scenes.scene(index)
        image, caption = train_scenes[index]
        assert image.shape == (1, 64, 64) and caption == scene.caption
        for place, (item, source) in enumerate(zip(scene.layout, scene.sources)):
            if item is None:
                assert source is None
                assert torch.equal(_quadrant(image, place), torch.full((1, 32, 32), -1.0))
            else:
                assert train_scenes.labels[source] == item
                # the exact 32x32 input the bundled class model sees
                assert torch.equal(_quadrant(image, place), prepare_images(images[source], 32))


def test_rgb_scenes_repeat_the_gray_channel():
    dataset = SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=4, channels=3)
    image, _ = dataset[0]
    assert image.shape == (3, 64, 64) and torch.equal(image[0], image[2])


def test_scenes_are_deterministic_by_seed(train_scenes):
    again = SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=10, seed=0)
    other = SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=10, seed=1)
    assert [again.scene(i) for i in range(10)] == [train_scenes.scene(i) for i in range(10)]  # count-independent
    assert [other.scene(i) for i in range(10)] != [train_scenes.scene(i) for i in range(10)]
    assert torch.equal(again[3][0], train_scenes[3][0])


def test_train_scenes_avoid_held_out_pairings_and_cover_every_item_place(train_scenes):
    placements, item_counts = Counter(), Counter()
    for index in range(len(train_scenes)):
        scene = train_scenes.scene(index)
        assert not scene.unseen and held_out_pairings(scene.layout) == []
        placements.update((item, place) for place, item in enumerate(scene.layout) if item is not None)
        item_counts[sum(item is not None for item in scene.layout)] += 1
    assert len(placements) == len(ITEM_NAMES) * len(PLACES)  # every (item, place) appears in training
    assert min(placements.values()) >= 100
    assert set(item_counts) == {1, 2, 3, 4}
    assert all(abs(count / len(train_scenes) - 0.25) < 0.04 for count in item_counts.values())  # uniform 1..4


def test_held_out_scenes_use_the_test_split_and_flag_unseen_pairings(test_scenes):
    images, labels = load_fashion_mnist(FASHION_DIR, "test")
    unseen = 0
    for index in range(len(test_scenes)):
        scene = test_scenes.scene(index)
        assert scene.unseen == bool(held_out_pairings(scene.layout))
        unseen += scene.unseen
        if scene.unseen:
            assert sum(item is not None for item in scene.layout) >= 2
        for item, source in zip(scene.layout, scene.sources):
            if item is not None:
                assert labels[source] == item
    assert 0.4 < unseen / len(test_scenes) < 0.6
    scene = test_scenes.scene(0)
    place = next(place for place, item in enumerate(scene.layout) if item is not None)
    assert torch.equal(_quadrant(test_scenes[0][0], place), prepare_images(images[scene.sources[place]], 32))


def test_canonical_probability_mixes_in_paraphrases():
    config = SceneConfig(canonical_probability=0.5)
    dataset = SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=400, config=config)
    canonical = 0
    for index in range(len(dataset)):
        scene = dataset.scene(index)
        assert parse_caption(scene.caption) == scene.layout
        canonical += scene.caption == caption_for(scene.layout)
    assert 0.5 <= canonical / len(dataset) < 0.85  # paraphrases of 1-item scenes can equal the canonical form


def test_scene_config_validation():
    with pytest.raises(ValueError, match="item_count_weights"):
        SceneConfig(item_count_weights=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="canonical_probability"):
        SceneConfig(canonical_probability=1.5)
    with pytest.raises(ValueError, match="unseen test scenes need 2 or more items"):
        SceneDataset.from_fashion_mnist(
            FASHION_DIR, "test", count=20, config=SceneConfig(item_count_weights=(1, 0, 0, 0))
        )
    only_single = SceneConfig(item_count_weights=(1, 0, 0, 0), unseen_fraction=0.0)
    dataset = SceneDataset.from_fashion_mnist(FASHION_DIR, "test", count=20, config=only_single)
    assert all(sum(item is not None for item in dataset.scene(i).layout) == 1 for i in range(20))


def test_single_item_train_scenes_need_no_unseen_fraction(tmp_path, capsys):
    # --unseen-fraction is unused for --split train (its help says so), so its default must not refuse 1-item scenes
    from nextscale.cli import main

    dataset = SceneDataset.from_fashion_mnist(FASHION_DIR, "train", count=20, config=SceneConfig((1, 0, 0, 0)))
    assert all(sum(item is not None for item in dataset.scene(i).layout) == 1 for i in range(20))
    args = ["make-scenes", "--data", str(FASHION_DIR), "--split", "train", "--count", "4", "--no-progress"]
    assert main([*args, "--item-count-weights", "1,0,0,0", "--out", str(tmp_path / "single")]) == 0
    assert "wrote 4 train scenes" in capsys.readouterr().out


def test_build_writes_a_caption_manifest_that_round_trips(tmp_path):
    out = build_scenes(FASHION_DIR, tmp_path / "scenes", "test", count=12, seed=3, progress=False)
    dataset = SceneDataset.from_fashion_mnist(FASHION_DIR, "test", count=12, seed=3)
    loaded = open_caption_dataset(out, 64, channels=1)
    assert isinstance(loaded, CaptionManifestDataset) and len(loaded) == 12
    index = read_scene_index(out)
    assert index["split"] == "test" and index["seed"] == 3 and index["source"]["split"] == "test"
    assert len(index["rules"]["held_out_pairings"]) == 60
    for i, record in enumerate(index["scenes"]):
        scene = dataset.scene(i)
        assert record["image"] == f"images/{i:05d}.png"
        assert record["layout"] == scene.layout and tuple(record["sources"]) == scene.sources
        assert record["unseen"] == scene.unseen and record["caption"] == scene.caption
        image, caption = loaded[i]
        expected_image, expected_caption = dataset[i]
        assert caption == expected_caption and torch.equal(image, expected_image)


def test_build_resumes_and_refuses_other_settings(tmp_path, monkeypatch):
    reference = build_scenes(FASHION_DIR, tmp_path / "reference", "train", count=10, seed=0, progress=False)
    write_png, calls = scenes_module._write_png, []

    def interrupted(path, canvas):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(path)
        write_png(path, canvas)

    monkeypatch.setattr(scenes_module, "_write_png", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_scenes(FASHION_DIR, tmp_path / "resumed", "train", count=10, seed=0, progress=False)
    assert not (tmp_path / "resumed" / "scenes.json").exists()
    monkeypatch.setattr(scenes_module, "_write_png", write_png)
    out = build_scenes(FASHION_DIR, tmp_path / "resumed", "train", count=10, seed=0, progress=False)
    files = sorted(path.relative_to(reference) for path in reference.rglob("*"))
    assert files == sorted(path.relative_to(out) for path in out.rglob("*"))  # no leftovers
    for name in files:
        if (reference / name).is_file():
            assert (reference / name).read_bytes() == (out / name).read_bytes()
    build_scenes(FASHION_DIR, out, "train", count=10, seed=0, progress=False)  # done: nothing to do
    with pytest.raises(ValueError, match="other settings"):
        build_scenes(FASHION_DIR, out, "train", count=10, seed=1, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build_scenes(FASHION_DIR, tmp_path / "busy", "train", count=10, seed=0, progress=False)


@pytest.mark.parametrize("split", ["train", "test"])
def test_committed_scene_assets(split):
    index = read_scene_index(SCENE_ASSETS / split)
    dataset = CaptionManifestDataset(SCENE_ASSETS / split / "captions.jsonl", 64, channels=1)
    assert len(dataset) == len(index["scenes"]) == {"train": 64, "test": 32}[split]
    assert index["source"]["split"] == split
    for record in index["scenes"]:
        assert parse_caption(record["caption"]) == record["layout"]
        assert record["unseen"] == bool(held_out_pairings(record["layout"]))
    unseen = sum(record["unseen"] for record in index["scenes"])
    assert unseen == 0 if split == "train" else unseen > 0
    regenerated = SceneDataset.from_fashion_mnist(FASHION_DIR, split, index["count"], index["seed"])
    if regenerated.settings()["source"]["sha256"] != index["source"]["sha256"]:
        pytest.skip("the committed scenes were made from the full Fashion-MNIST, not the test copy")
    for i in range(len(dataset)):
        assert torch.equal(dataset[i][0], regenerated[i][0]) and dataset[i][1] == regenerated[i][1]


def test_make_scenes_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(COMMANDS, "make-scenes", ("make_scenes", "build a Fashion-MNIST scenes folder"))
    out = tmp_path / "scenes"
    args = ["make-scenes", "--data", str(FASHION_DIR), "--split", "test", "--count", "6", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    assert "wrote 6 test scenes" in capsys.readouterr().out
    assert len(json.loads((out / "scenes.json").read_text())["scenes"]) == 6
    assert main([*args, "--seed", "1", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nextscale make-scenes: error:") and "other settings" in error and "\n" not in error


@pytest.mark.parametrize("weights", ["nan,1,1,1", "inf,1,1,1"])
def test_non_finite_item_count_weights_are_refused_before_anything_is_written(weights, tmp_path, capsys):
    # They turned every probability into nan: the build failed after writing its settings, with NaN among them, so
    # that even the same command could not resume it (NaN != NaN: "built with other settings").
    from nextscale.cli import main

    out = tmp_path / "scenes"
    args = ["make-scenes", "--data", str(FASHION_DIR), "--count", "2", "--no-progress", "--out", str(out)]
    assert main([*args, "--item-count-weights", weights]) == 2
    assert "item_count_weights are 4 finite non-negative weights" in capsys.readouterr().err
    assert not out.exists()
