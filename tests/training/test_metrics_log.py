"""MetricsLog: JSONL lines, TensorBoard scalars (the `train` extra), truncation on resume."""

import json

from nextscale.training.metrics import MetricsLog, format_metrics


def test_metrics_go_to_jsonl_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, enabled=True)
    log.write(10, "train", {"loss": 2.5, "scale_loss/scale0": 1.0})
    log.write(20, "train", {"loss": 2.0, "scale_loss/scale0": 0.5})
    log.flush()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[1] == {"step": 20, "split": "train", "loss": 2.0, "scale_loss/scale0": 0.5}
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(event.step, event.value) for event in events.Scalars("train/loss")] == [(10, 2.5), (20, 2.0)]
    assert [event.value for event in events.Scalars("train/scale_loss/scale0")] == [1.0, 0.5]


def test_truncate_after_drops_steps_a_resumed_run_logs_again(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    for step in (10, 20, 30):
        log.write(step, "train", {"loss": float(step)})
    log.truncate_after(20)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [10, 20]


def test_a_resumed_start_replaces_the_tensorboard_points_it_logs_again(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLog(tmp_path, enabled=True)  # logged steps 10..30, then crashed after its checkpoint of step 20
    for step in (10, 20, 30):
        first.write(step, "train", {"loss": float(step)})
    first.writer.close()
    resumed = MetricsLog(tmp_path, enabled=True)
    resumed.truncate_after(20)
    resumed.write(30, "train", {"loss": 3.0})
    resumed.write(40, "train", {"loss": 4.0})
    resumed.flush()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    # as in metrics.jsonl: step 30 once, the resumed run's value (not 30.0, then a jump back to step 30)
    assert [(event.step, event.value) for event in events.Scalars("train/loss")] == [
        (10, 10.0),
        (20, 20.0),
        (30, 3.0),
        (40, 4.0),
    ]


def test_disabled_log_on_other_ranks_writes_nothing(tmp_path):
    MetricsLog(tmp_path, enabled=False).write(1, "train", {"loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "tensorboard").exists()
    assert format_metrics({"loss": 2.0, "acc/scale0": 0.5, "acc/scale1": 0.25}) == "loss=2, acc=[0.5 0.25]"
    shown = format_metrics({"psnr/scale0": 18.0, "psnr/scale1": 21.4, "code_usage/scale0": 3.0})
    assert shown == (
        "psnr=[18 21.4] (dB, reconstructed from the first 1..K scales), code_usage=[3] (% of the codebook, per scale)"
    )
