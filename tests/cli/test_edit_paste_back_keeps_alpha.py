"""``nextscale edit --paste-back`` writes a transparent input's result with its alpha (a .png or .webp), and flattens
it on white, with a note, where the format has no alpha channel (a .jpg)."""

import numpy as np
import pytest
from PIL import Image

from nextscale.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest on one thread


def cut_out(height: int, width: int) -> np.ndarray:
    """An RGBA picture whose top 8 rows are transparent (colour 40 hidden under them)."""
    rgba = np.random.default_rng(0).integers(0, 256, (height, width, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:8, :, 3], rgba[:8, :, :3] = 0, 40
    return rgba


def test_edit_paste_back_writes_the_alpha_to_png_and_flattens_it_for_jpeg(tiny_pipeline_dir, tmp_path, capsys):
    image = tmp_path / "cut.png"
    Image.fromarray(cut_out(20, 24)).save(image)
    argv = ["edit", "--model", str(tiny_pipeline_dir), "--image", str(image), "--box", "0.5", "0", "1", "1"]
    assert main([*argv, "--seed", "0", "--paste-back", "--out", str(tmp_path / "e.png")]) == 0
    with Image.open(tmp_path / "e.png") as written:
        assert written.mode == "RGBA" and np.array_equal(np.asarray(written)[..., 3], cut_out(20, 24)[..., 3])
    assert "note" not in capsys.readouterr().out
    assert main([*argv, "--seed", "0", "--paste-back", "--out", str(tmp_path / "e.jpg")]) == 0
    assert "note: .jpg has no alpha channel" in capsys.readouterr().out
    with Image.open(tmp_path / "e.jpg") as written:
        assert written.mode == "RGB" and (np.asarray(written)[:6] > 230).all()  # the transparent rows: on white
