"""First-hour data messages name fixes the command in hand accepts: make-scenes takes the ``fashion-mnist:DIR`` the
missing-data message names, the colour hint names train-tokenizer's --in-channels outside train-tokenizer, and a
text model given labelled data is told to pass captions: or leave out --text-encoder."""

from collections import Counter
from pathlib import Path

import pytest

from nextscale.cli import main
from nextscale.data.summary import FileSizes, resolution_line
from nextscale.training.caption_prefix_checks import refuse_labelled_data_for_text

REPO = Path(__file__).resolve().parents[2]
FASHION_MNIST = REPO / "tests" / "assets" / "fashion_mnist"


def test_make_scenes_takes_the_data_form_its_error_names(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NEXTSCALE_FASHION_MNIST", str(tmp_path / "nowhere"))
    out = tmp_path / "scenes"
    assert main(["make-scenes", "--split", "test", "--count", "2", "--out", str(out), "--no-progress"]) == 2
    assert "pass --data fashion-mnist:DIR" in capsys.readouterr().err
    command = ["make-scenes", "--data", f"fashion-mnist:{FASHION_MNIST}", "--split", "test", "--count", "2"]
    assert main([*command, "--out", str(out), "--no-progress"]) == 0
    assert (out / "captions.jsonl").is_file()


def test_make_scenes_given_one_idx_file_names_its_folder(tmp_path, capsys):
    data = str(FASHION_MNIST / "t10k-images-idx3-ubyte.gz")
    assert main(["make-scenes", "--data", data, "--count", "2", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"pass its folder, {FASHION_MNIST}") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("channels", "gray", "trained_side", "fix"),
    [
        (1, 0, None, "pass --in-channels 3 to keep them"),  # train-tokenizer: its own flag
        (1, 0, 64, "a colour tokenizer, from `train-tokenizer --in-channels 3`, keeps them"),  # tokenize, train
        (3, 4, None, "pass --in-channels 1 to train on one channel"),
        (3, 4, 64, "`train-tokenizer --in-channels 1`"),
    ],
)
def test_the_colour_hint_names_a_flag_of_the_command(channels, gray, trained_side, fix):
    sizes = FileSizes(Counter({(64, 64): 4}), Counter({"L" if gray else "RGB": 4}), checked=4, total=4, gray=gray)
    line = resolution_line(64, channels, (1, 2, 4), "preset x", sizes, downsample=16, trained_side=trained_side)
    assert fix in line
    if trained_side is not None:
        assert "pass --in-channels" not in line


def test_a_text_model_on_class_folders_names_both_fixes():
    with pytest.raises(ValueError, match="pass --data captions:PATH .*or leave out --text-encoder"):
        refuse_labelled_data_for_text(str(REPO / "tests" / "assets" / "image_folder"))
    with pytest.raises(ValueError, match="Fashion-MNIST's class labels.*leave out --text-encoder"):
        refuse_labelled_data_for_text("fashion-mnist")
    refuse_labelled_data_for_text("captions:anything")  # captioned data passes


def test_a_text_model_on_a_caption_folder_without_the_prefix_names_it(tmp_path):
    (tmp_path / "captions.jsonl").write_text('{"image": "a.png", "caption": "a bag"}\n')
    with pytest.raises(ValueError, match=f"holds captions.jsonl.*pass --data captions:{tmp_path}$"):
        refuse_labelled_data_for_text(str(tmp_path))
