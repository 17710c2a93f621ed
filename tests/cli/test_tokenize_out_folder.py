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


def test_tokens_written_inside_the_image_folder_are_refused_before_they_become_a_class(tmp_path, capsys):
    """`--out photos/tokens` used to work once, and then every later read of photos/ (a re-run with --overwrite,
    train-tokenizer, train --data) listed tokens/ as an extra, empty class."""
    from nextscale.cli import main
    from nextscale.cli.tokenize import check_out_outside_images

    images = tmp_path / "photos"
    (images / "cats").mkdir(parents=True)
    for out in (images / "tokens", images, images / "cats" / "tokens"):
        with pytest.raises(ValueError, match="lies inside the image folder --data .*; put the tokens outside it"):
            check_out_outside_images(out, str(images))
    check_out_outside_images(tmp_path / "tokens", str(images))  # beside it
    check_out_outside_images(images / "tokens", f"captions:{images}")  # caption folders list no class folders
    code = main(["tokenize", "--tokenizer", str(tmp_path / "none"), "--data", str(images), "--out", str(images / "t")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "lies inside the image folder" in err, err
    assert sorted(path.name for path in images.iterdir()) == ["cats"]  # nothing created
