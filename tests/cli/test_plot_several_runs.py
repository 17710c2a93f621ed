"""`nextscale plot` with several runs: `--run A --run B` draws both (as `--run A B`), each named in the legend."""

import json

import pytest
from matplotlib.figure import Figure

from nextscale.cli import main

RECORDS = [
    {"step": 10, "split": "train", "loss": 5.0},
    {"step": 20, "split": "train", "loss": 4.0},
    {"step": 20, "split": "eval", "loss": 4.5},
]


def write_run(run_dir, offset: float) -> None:
    run_dir.mkdir(parents=True)
    lines = [json.dumps({**record, "loss": record["loss"] + offset}) for record in RECORDS]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def legends(monkeypatch):
    """The legend texts of every figure saved (each panel's entries, in order)."""
    seen: list[list[str]] = []
    savefig = Figure.savefig

    def recording(figure, *args, **kwargs):
        seen.append([text.get_text() for axis in figure.axes if axis.get_legend() for text in axis.get_legend().texts])
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return seen


@pytest.mark.parametrize("repeated", [True, False])
def test_two_runs_are_drawn_whether_run_is_repeated_or_not(tmp_path, legends, capsys, repeated):
    write_run(tmp_path / "fine-tuned", 0.0)
    write_run(tmp_path / "scratch", 1.0)
    runs = [str(tmp_path / "fine-tuned"), str(tmp_path / "scratch")]
    flags = ["--run", runs[0], "--run", runs[1]] if repeated else ["--run", *runs]
    out = tmp_path / "both.png"
    assert main(["plot", *flags, "--out", str(out)]) == 0
    assert out.is_file() and legends == [["fine-tuned", "scratch", "fine-tuned", "scratch"]]


def test_repeated_labels_name_the_runs_in_order(tmp_path, legends):
    write_run(tmp_path / "a", 0.0)
    write_run(tmp_path / "b", 1.0)
    argv = ["plot", "--run", str(tmp_path / "a"), "--labels", "tuned", "--run", str(tmp_path / "b")]
    assert main([*argv, "--labels", "scratch", "--out", str(tmp_path / "both.png")]) == 0
    assert legends == [["tuned", "scratch", "tuned", "scratch"]]


def test_runs_of_one_folder_name_are_told_apart_by_their_paths(tmp_path, legends):
    write_run(tmp_path / "lr-1e-3" / "var", 0.0)
    write_run(tmp_path / "lr-3e-3" / "var", 1.0)
    runs = [str(tmp_path / "lr-1e-3" / "var"), str(tmp_path / "lr-3e-3" / "var")]
    assert main(["plot", "--run", *runs, "--out", str(tmp_path / "both.png")]) == 0
    assert legends == [[*runs, *runs]]


def test_a_run_given_twice_or_labels_that_do_not_match_are_refused(tmp_path, capsys):
    write_run(tmp_path / "a", 0.0)
    write_run(tmp_path / "b", 1.0)
    assert main(["plot", "--run", str(tmp_path / "a"), "--run", str(tmp_path / "a")]) == 2
    assert "is given twice" in capsys.readouterr().err
    assert main(["plot", "--run", str(tmp_path / "a"), "--labels", "x", "y"]) == 2
    assert "got 2 --labels for 1 run;" in capsys.readouterr().err
    assert not (tmp_path / "a" / "curves.png").exists()


def test_the_label_of_one_run_titles_its_figure(tmp_path, monkeypatch):
    write_run(tmp_path / "a", 0.0)
    titles = []
    savefig = Figure.savefig
    monkeypatch.setattr(
        Figure,
        "savefig",
        lambda figure, *a, **k: titles.append(figure._suptitle.get_text()) or savefig(figure, *a, **k),
    )
    assert main(["plot", "--run", str(tmp_path / "a"), "--labels", "baseline"]) == 0
    assert titles == ["baseline"]


def test_the_default_comparison_file_is_checked_before_drawing(tmp_path, capsys, monkeypatch):
    # Only --out was checked; the default comparison.png in the current folder failed deep inside matplotlib.
    write_run(tmp_path / "a", 0.0)
    write_run(tmp_path / "b", 1.0)
    (tmp_path / "comparison.png").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "--run", "a", "b"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out comparison.png is a folder" in err, err
