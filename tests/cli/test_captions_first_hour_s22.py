"""A researcher's first hour with captioned pictures: CSV headers as spreadsheets write them, a header that cannot
be read names its fix, the log warns when the square crop cuts most of a picture (and what its caption places
there), and a text model asked for no prompt says how to draw unconditional samples."""

import pytest
from PIL import Image

from nextscale.cli import main
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.summary import FileSizes, describe_data, resolution_line


def csv_folder(root, header: str, rows: list[str]):
    root.mkdir(parents=True)
    for index in range(len(rows)):
        Image.new("RGB", (16, 16), (200, 20 * index, 0)).save(root / f"{index:02d}.png")
    (root / "captions.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root / "captions.csv"


def test_a_spreadsheet_header_with_capitals_and_spaces_reads(tmp_path):
    manifest = csv_folder(tmp_path / "data", "Image, Caption", ["00.png, a red circle", '01.png, "a square, red"'])
    dataset = CaptionManifestDataset(manifest, size=16)
    assert sorted(caption for sample in dataset.samples for caption in sample.captions) == [
        "a red circle",
        "a square, red",
    ]


@pytest.mark.parametrize(
    ("header", "fix"),
    [
        ("image,captoin", "rename 'captoin' to 'caption' in the first row"),
        ("image;caption", "the file is separated by ';'; save it with commas"),
        ("file,text", "make its first row `image,caption`"),
    ],
)
def test_a_csv_header_without_the_columns_names_its_fix(tmp_path, capsys, header, fix):
    manifest = csv_folder(tmp_path / "data", header, ["00.png,a red circle"])
    assert main(["info", f"captions:{manifest.parent}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "needs a header row with 'image' and 'caption' columns" in error[0]
    assert fix in error[0]


def test_the_log_names_a_picture_the_square_crop_mostly_cuts():
    sizes = FileSizes({(100, 30): 1, (32, 32): 3}, {"RGB": 4}, checked=4, total=4)
    line = resolution_line(32, 3, (1, 2, 4, 8), "--resolution 32", sizes, downsample=4)
    assert "the most elongated, 100x30, keeps only about its middle 30 %" in line
    square = FileSizes({(48, 40): 1, (32, 32): 3}, {"RGB": 4}, checked=4, total=4)
    assert "elongated" not in resolution_line(32, 3, (1, 2, 4, 8), "--resolution 32", square, downsample=4)


def test_one_held_out_sample_is_singular():
    lines = describe_data(["a", "b"], held_out_set=["c"])  # "held-out: 1 image from list", not "1 images"
    assert lines[-1].startswith("held-out: 1 image from")


def test_a_text_model_without_a_prompt_says_how_to_sample_unconditionally(capsys, tmp_path):
    assert main(["sample", "--model", "bundled:scenes", "--out", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert 'give --prompt TEXT (--prompt "" draws unconditional samples)' in error
