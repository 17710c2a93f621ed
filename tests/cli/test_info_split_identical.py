"""`nextscale info` after its split into one module per kind of path: the dispatcher still hands each kind to its
describer, every module stays small, and a text model's suggested command uses a prompt the model knows."""

import shlex
import shutil
from pathlib import Path

from info_reports import facts

from nextscale.cli import info, info_data, info_paths
from nextscale.pretrained import bundled_model_path

INFO_MODULES = sorted(Path(info.__file__).parent.glob("info*.py"))


def test_each_info_module_stays_under_the_style_limit():
    assert len(INFO_MODULES) >= 7  # info, info_paths and the five describers, plus their number formats
    sizes = {path.name: len(path.read_text().splitlines()) for path in INFO_MODULES}
    assert all(size < 300 for size in sizes.values()), sizes


def test_the_dispatcher_uses_the_describers_of_the_kind_modules():
    assert info_paths.describe_tokens is info_data.describe_tokens  # tests and callers may still name it there


def test_the_bundled_text_model_suggests_its_own_example_caption(capsys):
    caption = (bundled_model_path("scenes") / "examples" / "scene.txt").read_text().strip()
    (report,) = facts(capsys, "bundled:scenes")
    assert report["try"] == f"nextscale sample --model bundled:scenes --prompt {shlex.quote(caption)} --out grid.png"
    assert "'a photo'" not in report["try"]


def test_a_text_model_without_examples_gets_a_generic_prompt(tmp_path, capsys):
    folder = tmp_path / "scenes"
    shutil.copytree(bundled_model_path("scenes"), folder, ignore=shutil.ignore_patterns("examples"))
    (report,) = facts(capsys, str(folder))
    assert report["try"] == f"nextscale sample --model {folder} --prompt 'a photo' --out grid.png"
