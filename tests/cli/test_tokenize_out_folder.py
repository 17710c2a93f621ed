"""`nextscale tokenize --out`: what a used folder holds, and what --overwrite removes."""

import pytest

from nextscale.cli.tokenize import check_out_folder, remove_token_files


def test_a_killed_runs_partly_written_shard_counts_as_an_unfinished_tokenization(tmp_path):
    """A kill while a shard was being written leaves atomic_write's temporary file: the rerun names it and
    --overwrite removes it with the token files, leaving the user's own files."""
    out = tmp_path / "tokens"
    out.mkdir()
    (out / ".shard-00000.safetensors.k3j2.tmp").write_bytes(b"half a shard")
    (out / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match=r"unfinished tokenization \(0 shards, 1 partly written.*--overwrite"):
        check_out_folder(out, overwrite=False)
    (out / "shard-00000.safetensors").write_bytes(b"a shard")
    (out / ".manifest.json.x9.tmp").write_text("{")
    remove_token_files(out)
    assert sorted(path.name for path in out.iterdir()) == ["notes.md"]
