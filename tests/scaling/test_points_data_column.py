"""points.csv records the data a run trained and was evaluated on and its vocabulary size (new last columns):
`scaling fit --csv` refuses a table joining rows of other data, notes rows at chance loss ln(vocab_size) as
`--sweep` fits note runs, and reads files written before these columns as before."""

import csv
import json
import math
from types import SimpleNamespace

from nextscale.cli import main
from nextscale.scaling.chance import chance_notes, table_chance_notes
from nextscale.scaling.sweep import COLUMNS, EvalPoint, RunSummary, read_table, write_points

NEW_COLUMNS = ("train_data", "eval_data", "vocab_size")


def _write(path, rows, columns):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_sweep_records_its_data_and_vocab_size(finished_sweep, token_data):
    _, tokens, eval_tokens = token_data
    assert COLUMNS[-3:] == NEW_COLUMNS  # appended: the older columns keep their positions
    header = (finished_sweep / "points.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == COLUMNS
    rows = read_table(finished_sweep / "points.csv")
    assert [row["run"] for row in rows] == ["d1", "d2"]
    for row in rows:
        assert (row["train_data"], row["eval_data"]) == (str(tokens.resolve()), str(eval_tokens.resolve()))
        assert row["vocab_size"] == "64"  # the tiny tokenizer's codebook
    points = json.loads((finished_sweep / "points.json").read_text())
    assert {point["train_data"] for point in points["points"]} == {str(tokens.resolve())}
    assert {"train_data", "vocab_size"} <= points["accounting"].keys()


def test_an_old_points_csv_without_the_columns_fits_as_before(finished_sweep, tmp_path, capsys):
    rows = read_table(finished_sweep / "points.csv")
    new = _write(tmp_path / "new.csv", rows, COLUMNS)
    old = _write(tmp_path / "old.csv", rows, COLUMNS[: -len(NEW_COLUMNS)])
    assert "vocab_size" not in old.read_text()
    results = []
    for table in (new, old):
        assert main(["scaling", "fit", "--csv", str(table), "--json"]) == 0
        results.append({**json.loads(capsys.readouterr().out), "source": None})
    assert results[0] == results[1] and results[0]["num_points"] == 2
    texts = []
    for table in (new, old):
        assert main(["scaling", "fit", "--csv", str(table), "--x", "compute"]) == 0
        texts.append(capsys.readouterr().out.replace(str(table), "TABLE"))
    assert texts[0] == texts[1]


def test_rows_of_other_data_are_refused_in_one_line(finished_sweep, tmp_path, capsys):
    rows = read_table(finished_sweep / "points.csv")
    for name, other in (("train_data", "/data/cifar/tokens-train"), ("eval_data", "/data/cifar/tokens-test")):
        joined = [rows[0], {**rows[1], name: other}]
        table = _write(tmp_path / f"{name}.csv", joined, COLUMNS)
        assert main(["scaling", "fit", "--csv", str(table)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert f"different sweeps: {name} " in err and other in err and rows[0][name] in err
        assert "fit one sweep's points.csv at a time" in err
    table = _write(tmp_path / "vocab.csv", [rows[0], {**rows[1], "vocab_size": "4096"}], COLUMNS)
    assert main(["scaling", "plot", "--csv", str(table), "--out", str(tmp_path / "f.png")]) == 2
    assert "vocab_size 64 vs 4096" in capsys.readouterr().err and not (tmp_path / "f.png").exists()
    # a row of an older points.csv (empty data columns) joined with new ones is not compared
    table = _write(tmp_path / "mixed.csv", [rows[0], {**rows[1], **dict.fromkeys(NEW_COLUMNS, "")}], COLUMNS)
    assert main(["scaling", "fit", "--csv", str(table)]) == 0


HEADER = "run,depth,seed,params,batch_size,tokens_per_sample,step,total_steps,compute,loss,finished"


def _table(tmp_path, losses, vocab_size: int | None):
    header = HEADER + (",vocab_size" if vocab_size is not None else "")
    lines = [header]
    for depth, loss in enumerate(losses, start=1):
        row = f"d{depth},{depth},0,{1000 * depth**2},16,21,80,80,{1e9 * depth**2},{loss},True"
        lines.append(row + (f",{vocab_size}" if vocab_size is not None else ""))
    path = tmp_path / ("vocab.csv" if vocab_size is not None else "plain.csv")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_csv_notes_rows_at_chance_when_the_table_has_vocab_size(tmp_path, capsys):
    losses = [math.log(64), 3.0, 2.8]  # d1 learned nothing: ln(64) is the uniform guess over 64 codes
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, losses, 64)), "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the note goes to stderr: stdout stays one JSON object
    (note,) = captured.err.strip().splitlines()
    assert note.startswith("note: d1's held-out loss 4.1589 is ln(64) = 4.1589") and "in 80 steps" in note
    assert "--lr" in note
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, losses, None))]) == 0  # no vocab_size: no note
    assert capsys.readouterr().err == ""


def test_a_table_row_gets_the_note_a_run_gets():
    run = SimpleNamespace(run="d3", evals=(SimpleNamespace(loss=6.2359, step=30),), vocab_size=512)
    row = {"run": "d3", "loss": "6.2359", "vocab_size": "512", "step": "30"}
    assert chance_notes([run]) == table_chance_notes([row]) and len(chance_notes([run])) == 1
    for unknown in ({"vocab_size": ""}, {"vocab_size": "n/a"}, {"loss": "nan"}, {"vocab_size": None}):
        assert table_chance_notes([{**row, **unknown}]) == []
    (unnamed,) = table_chance_notes([{"loss": "6.3", "vocab_size": "512"}])
    assert unnamed.startswith("note: row 1's held-out loss") and "learned nothing;" in unnamed


def test_a_data_path_with_a_comma_survives_points_csv(tmp_path):
    point = EvalPoint(step=3, tokens_seen=504, compute=1.0e7, loss=4.1, loss_last=4.0, error=0.5, error_last=0.6)
    run = RunSummary(
        run="d1", depth=1, seed=0, embed_dim=16, num_heads=1, params=7185, params_non_embedding=6465,
        params_per_token=4400, params_per_image=2176, tokens_per_sample=21, batch_size=8, total_steps=3,
        saved_step=3, evals=(point,), eval_samples=32, vocab_size=64, train_data="/data/fm, v2/train",
        eval_data=None,
    )  # fmt: skip
    csv_path, _ = write_points(tmp_path, [run])
    (row,) = read_table(csv_path)
    recorded = {name: row[name] for name in (*NEW_COLUMNS, "finished")}
    assert recorded == {"train_data": "/data/fm, v2/train", "eval_data": "", "vocab_size": "64", "finished": "True"}
    assert row["loss"] == "4.1" and list(row) == list(COLUMNS)


def test_sweep_names_its_tokenizer_flag_for_a_run_checkpoint(token_data, tmp_path, capsys):
    """A tokenizer run's checkpoint file given as --tokenizer is refused before the sweep writes anything, naming the
    flag and the run folder (the loader's own check names no flag)."""
    _, tokens, eval_tokens = token_data
    run = tmp_path / "runs" / "tok"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"kind": "tokenizer"}))
    checkpoint = run / "checkpoints" / "step-00000030.pt"
    checkpoint.write_bytes(b"never read")
    out = tmp_path / "sweep"
    argv = ["scaling", "run", "--out", str(out), "--depths", "1", "--tokens", str(tokens), "--eval-tokens"]
    argv += [str(eval_tokens), "--tokenizer", str(checkpoint), "--steps", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--tokenizer {checkpoint} is a checkpoint of the training run {run}: pass the run folder" in err
    assert not out.exists()
