"""The README's Python "Use" block runs as written against the bundled models (the text half on bundled:scenes in
place of a converted `star-256/` folder), and gives what its comments say."""

import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TEXT_HALF = "from nextscale import Pipeline                        # returns a TextPipeline"


def readme_use_block() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", readme, re.DOTALL | re.MULTILINE)
    assert blocks, "README.md has no python code block"
    return blocks[0]


@pytest.mark.slow  # two bundled models, seven sampling calls: about 25 s of CPU
def test_the_readme_use_block_runs(tmp_path, monkeypatch):
    block = readme_use_block()
    assert TEXT_HALF in block, "the README's Use block no longer starts its text half as this test expects"
    class_half, text_half = block.split(TEXT_HALF)
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (100, 60), "white").save("photo.png")  # the block's "photo.png": a non-square picture
    found = {}
    exec(class_half, found)

    assert len(found["views"]) == len(found["pipe"].transformer.config.scale_sides)  # one batch per scale
    assert found["views"][-1].shape[0] == 8
    assert Image.open("grid.png").size[0] > Image.open("grid.png").size[1]  # 4 per row, 2 rows
    assert len(found["out"].images) == 2  # [3, None]: one conditional and one unconditional row
    assert found["edited"].pasted()[0].size == (100, 60)  # the input's own size
    assert len(found["batch"].images) == 3

    text = {}
    exec(TEXT_HALF + text_half.replace('"star-256/"', '"bundled:scenes"'), text)
    assert type(text["star"]).__name__ == "TextPipeline"
    assert len(text["out"].images) == 1
