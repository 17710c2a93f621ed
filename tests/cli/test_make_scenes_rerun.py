"""make-scenes run again on a build: a larger --count grows it (scene i does not depend on the count), a smaller one
or other settings are refused in one line that names each differing flag with both values."""

import json
from pathlib import Path

import pytest

from nextscale.cli import main
from nextscale.data import scenes as scenes_module
from nextscale.data.scenes import build_scenes, check_can_grow

FASHION_DIR = Path(__file__).resolve().parents[1] / "assets" / "fashion_mnist"


def make_scenes(out: Path, *flags: str) -> list[str]:
    return ["make-scenes", "--data", str(FASHION_DIR), "--out", str(out), "--no-progress", *flags]


def test_a_larger_count_grows_a_finished_build_into_the_same_scenes(tmp_path, capsys):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    assert main(make_scenes(grown, "--count", "4", "--seed", "2")) == 0
    first_png = (grown / "images" / "00000.png").stat().st_mtime_ns
    assert main(make_scenes(grown, "--count", "7", "--seed", "2")) == 0
    assert main(make_scenes(fresh, "--count", "7", "--seed", "2")) == 0
    assert "wrote 7 train scenes" in capsys.readouterr().out
    assert (grown / "images" / "00000.png").stat().st_mtime_ns == first_png  # kept, not redrawn
    assert (grown / "captions.jsonl").read_text() == (fresh / "captions.jsonl").read_text()
    assert json.loads((grown / "scenes.json").read_text()) == json.loads((fresh / "scenes.json").read_text())
    assert sorted(path.name for path in grown.iterdir()) == ["captions.jsonl", "images", "scenes.json"]


def test_an_interrupted_growth_resumes_and_leaves_the_old_index_readable(tmp_path, monkeypatch):
    out = build_scenes(FASHION_DIR, tmp_path / "scenes", "test", count=3, seed=0, progress=False)
    before = (out / "captions.jsonl").read_text()

    def interrupted(path, canvas):
        raise KeyboardInterrupt

    write_png = scenes_module._write_png
    monkeypatch.setattr(scenes_module, "_write_png", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_scenes(FASHION_DIR, out, "test", count=5, seed=0, progress=False)
    assert (out / "captions.jsonl").read_text() == before  # the finished 3 stay usable meanwhile
    monkeypatch.setattr(scenes_module, "_write_png", write_png)
    with pytest.raises(ValueError, match="holds a build of 5 scenes, and --count 3 would drop some"):
        build_scenes(FASHION_DIR, out, "test", count=3, seed=0, progress=False)
    build_scenes(FASHION_DIR, out, "test", count=5, seed=0, progress=False)
    assert len((out / "captions.jsonl").read_text().splitlines()) == 5
    assert not (out / ".scenes-build.json").exists()


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--seed", "1"], "--seed 1 (this folder: 0)"),
        (["--split", "test"], "--split test (this folder: train)"),
        (["--canonical-probability", "0.5"], "--canonical-probability 0.5 (this folder: 1.0)"),
        (["--item-count-weights", "1,2,0,0"], "--item-count-weights 1,2,0,0 (this folder: 1,1,1,1)"),
    ],
)
def test_other_settings_are_named_with_both_values(flags, named, tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(make_scenes(out, "--count", "2")) == 0
    capsys.readouterr()
    assert main(make_scenes(out, "--count", "2", *flags)) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nextscale make-scenes: error:") and "\n" not in error
    assert "other settings: " + named in error and "choose another --out" in error
    assert "--count" not in error  # the count is no setting to match: a larger one grows the build


def test_a_smaller_count_is_refused_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(make_scenes(out, "--count", "3")) == 0
    index = (out / "scenes.json").read_text()
    capsys.readouterr()
    assert main(make_scenes(out, "--count", "2")) == 2
    assert "holds a build of 3 scenes, and --count 2 would drop some: give --count 3 or more" in capsys.readouterr().err
    assert (out / "scenes.json").read_text() == index


def test_growth_that_would_rename_every_image_is_refused(tmp_path):
    check_can_grow(tmp_path, 90_000, 100_000)  # images/00000.png .. 99999.png: same width
    with pytest.raises(ValueError, match="cannot grow past 100000 scenes in place"):
        check_can_grow(tmp_path, 90_000, 100_001)


def test_other_fashion_mnist_images_are_named_as_the_data(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert main(make_scenes(out, "--count", "2")) == 0
    index = json.loads((out / "scenes.json").read_text())
    index["source"]["sha256"] = "0" * 64  # as if built from another copy of Fashion-MNIST
    (out / "scenes.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert main(make_scenes(out, "--count", "2")) == 2
    assert "other settings: --data: other Fashion-MNIST images" in capsys.readouterr().err
