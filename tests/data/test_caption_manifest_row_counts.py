"""A manifest row that is not UTF-8, for an image that other rows caption (found by a first-hour user run, session 18).

The image still trains (its good rows' captions), yet the row was counted as a skipped sample: the log said
"skipped 1 of 21 samples" for a CSV of 20 images that were all used, and the held-out line "1 skipped sample not
counted". Such a row is a lost caption, not a lost sample: it is named (``undecodable_lines``) with the fix, as
a captionless line of a captioned image is (``uncaptioned_lines``); only an image left with no usable caption counts
as skipped, and ``--bad-images fail`` stops at the row, as it does at a caption file that is not UTF-8.
"""

import json
import logging

import pytest
from PIL import Image

from nextscale.data.caption_manifests import CaptionManifestDataset


def test_an_undecodable_row_of_a_captioned_image_is_no_skipped_sample(tmp_path, caplog):
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "a.png")
    rows = "image,caption\r\na.png,a red square\r\na.png,a red caf\u00e9 square\r\n"
    (tmp_path / "captions.csv").write_bytes(rows.encode("cp1252"))  # Excel's "CSV" on Windows
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionManifestDataset(tmp_path / "captions.csv", size=16)
    assert len(dataset) == 1 and dataset[0][1] == "a red square"  # the image trains on its good caption
    assert sum(dataset.skipped.values()) == 0, f"counted as skipped: {dataset.skipped}"
    assert dataset.undecodable_lines == [f"{tmp_path / 'captions.csv'}:3"]
    assert "line captions.csv:3 is not UTF-8" in caplog.text and "iconv -f cp1252 -t utf-8" in caplog.text
    with pytest.raises(ValueError, match=r"line captions.csv:3 is not UTF-8; re-save as UTF-8.*--bad-images skip"):
        CaptionManifestDataset(tmp_path / "captions.csv", size=16, bad_images="fail")


def test_a_jsonl_image_whose_only_line_is_undecodable_is_one_skipped_sample(tmp_path):
    for name in ("a", "b"):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{name}.png")
    lines = [
        json.dumps({"image": "a.png", "caption": "a square"}).encode(),
        '{"image": "a.png", "caption": "caf\u00e9"}'.encode("cp1252"),  # a's other caption: no sample lost
        '{"image": "b.png", "caption": "caf\u00e9"}'.encode("cp1252"),  # b's only one: b is lost
    ]
    (tmp_path / "captions.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    dataset = CaptionManifestDataset(tmp_path / "captions.jsonl", size=16)
    assert [sample.captions for sample in dataset.samples] == [("a square",)]
    assert {reason: count for reason, count in dataset.skipped.items() if count} == {"caption_not_utf8": 1}
    assert dataset.undecodable_lines == [f"{tmp_path / 'captions.jsonl'}:2"]
