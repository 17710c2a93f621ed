"""Unusable captions under ``--bad-images fail`` (found by a first-hour user run, session 18).

A caption saved by Notepad as "ANSI" (Windows-1252), or an empty one, dropped its image even under ``--bad-images
fail``, the flag a careful user passes to lose nothing, and the only sign was "caption not utf8: ...txt" inside a
long warning, with no fix. ``fail`` now stops at every sample a caption source would skip, naming it, and the skip
warning names each problem with its first file and, for an encoding, the fix.
"""

import logging

import pytest
from PIL import Image

from nextscale.data.caption_folders import CaptionFolderDataset

SIZE = 16


def write_folder(root) -> None:
    for name in ("a", "b", "c"):
        Image.new("RGB", (SIZE, SIZE)).save(root / f"{name}.png")
    (root / "a.txt").write_text("a black square")
    (root / "b.txt").write_bytes("un caf\u00e9 noir".encode("cp1252"))  # Notepad's "ANSI"
    (root / "c.txt").write_text("  \n")


def test_an_undecodable_or_empty_caption_stops_the_fail_policy_naming_file_and_fix(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ValueError) as caught:
        CaptionFolderDataset(tmp_path, SIZE, bad_images="fail")
    message = str(caught.value)
    assert "2 of 3 samples cannot be used" in message and "\n" not in message
    assert f"1 caption not UTF-8 ({tmp_path / 'b.txt'}; re-save as UTF-8, e.g. `iconv -f cp1252 -t utf-8" in message
    assert f"1 empty caption ({tmp_path / 'c.txt'})" in message and message.endswith(
        "--bad-images skip to go on without them"
    )


def test_the_skip_warning_names_each_caption_problem_and_the_encoding_fix_in_one_line(tmp_path, caplog):
    write_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="nextscale.data.captions"):
        dataset = CaptionFolderDataset(tmp_path, SIZE)
    assert len(dataset) == 1
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.startswith(f"{tmp_path}: skipped 2 of 3 samples: 1 caption not UTF-8 ({tmp_path / 'b.txt'}; re-save")
    assert "iconv -f cp1252 -t utf-8" in line and "1 empty caption" in line
