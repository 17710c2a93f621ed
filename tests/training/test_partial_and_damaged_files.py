"""A run killed mid-write: a half-written last metrics line is skipped; damaged checkpoints say the fix."""

import json

import pytest

from nextscale.cli import main
from nextscale.training import checkpoint as ckpt
from nextscale.training.curves import read_metrics
from nextscale.training.metrics import MetricsLog, read_metrics_records

LINES = [json.dumps({"step": step, "split": "train", "loss": 5.0 - step}) for step in (1, 2)]
HALF = '{"step": 3, "split": "train", "lo'  # what a write cut short leaves: no closing brace, no newline


def write(run_dir, text):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text(text)


def test_a_half_written_last_line_is_skipped_by_the_reader_and_plot(tmp_path, capsys):
    write(tmp_path / "run", "\n".join(LINES) + "\n" + HALF)
    assert [number for number, _ in read_metrics_records(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    assert read_metrics(tmp_path / "run")["train"]["loss"] == [(1, 4.0), (2, 3.0)]
    assert main(["plot", "--run", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "curves.png").is_file()


def test_a_broken_line_before_the_last_is_still_reported(tmp_path, capsys):
    write(tmp_path / "run", LINES[0] + "\n" + HALF + "\n" + LINES[1] + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2 is not a metrics record .*delete or repair that line"):
        read_metrics(tmp_path / "run")
    write(tmp_path / "ended", "\n".join(LINES) + "\nnot json\n")  # a finished line (it has its newline)
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3"):
        read_metrics(tmp_path / "ended")
    assert main(["plot", "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.jsonl:2" in err


def test_resume_drops_a_half_written_last_line(tmp_path):
    write(tmp_path, "\n".join(LINES) + "\n" + HALF)
    log = MetricsLog(tmp_path, enabled=True)
    log.truncate_after(2)  # what resuming from a step-2 checkpoint does
    log.write(3, "train", {"loss": 2.0})
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_bytes_that_are_no_utf8_are_a_damaged_line_not_an_unnamed_decode_error(tmp_path):
    """Garbage a crash left at the end (no newline) is skipped like any half-written line, so resuming works;
    before the last line it is reported with the file and line, like any other broken line."""
    garbage = b'{"step": 3, "split": "tr\xff\xfe\x80'
    (tmp_path / "metrics.jsonl").write_bytes(("\n".join(LINES) + "\n").encode() + garbage)
    log = MetricsLog(tmp_path, enabled=True)
    log.truncate_after(2)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    (tmp_path / "metrics.jsonl").write_bytes(garbage + b"\n" + LINES[1].encode() + b"\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:1 is not a metrics record"):
        read_metrics(tmp_path)


def test_no_readable_checkpoint_says_how_to_start_over(tmp_path):
    path = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 10), {"step": 10})
    path.write_bytes(path.read_bytes()[:20])  # truncated after its record was written
    with pytest.raises(ckpt.CheckpointError) as raised:
        ckpt.load_latest(tmp_path)
    message = str(raised.value)
    assert "step-00000010.pt is truncated" in message and "\n" not in message
    assert "delete step-00000010.pt, step-00000010.pt.json there to train this run again from step 0" in message
    assert "another --run-dir" in message
