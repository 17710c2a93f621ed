"""A manifest file passed as --data without captions: is refused naming the prefix, not called a missing folder."""

import pytest

from nextscale.training.data_specs import build_datasets, whole_source


def test_a_manifest_file_without_the_prefix_names_the_prefix(tmp_path):
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text('{"image": "a.png", "caption": "a red square"}\n')
    for read in (lambda: build_datasets(str(manifest), 8, 3), lambda: whole_source(str(manifest), 8, 3)):
        with pytest.raises(ValueError, match=f"pass --data captions:{manifest} for a text model"):
            read()
