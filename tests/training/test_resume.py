"""Resume: a run interrupted and re-run continues at the same step and data position with the same losses."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import read_metrics, state_differences, tiny_configs, train_config

from nextscale.pretrained import save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.checkpoint import latest_checkpoint
from nextscale.training.config import TokenizerLossConfig, TransformerObjective, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _transformer_trainer(run_dir, data, **overrides):
    tokenizer_config, transformer_config = tiny_configs()  # dropout and drop-path on: the RNG must resume too
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(**{"total_steps": 6, "grad_accum": 2, "ema_decay": 0.5, **overrides})
    return TransformerTrainer(transformer, tokenizer, objective, config, run_dir, *data)


def test_transformer_resume_matches_uninterrupted_run(tmp_path, data):
    straight = _transformer_trainer(tmp_path / "straight", data)
    straight.fit()
    interrupted = _transformer_trainer(tmp_path / "resumed", data)
    interrupted.fit(max_steps=3)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000003.pt"
    resumed = _transformer_trainer(tmp_path / "resumed", data)
    assert resumed.step == 3
    assert resumed.sampler.state_dict()["step"] == 3 * 2  # 3 optimizer steps of 2 micro-batches consumed
    resumed.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight")]
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == losses
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight.raw_model.state_dict().values(), resumed.raw_model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    # the final checkpoints (weights, EMA, optimizer moments, data position, RNG) are bit-identical too
    assert (
        state_differences(ckpt.load_latest(tmp_path / "straight")[0], ckpt.load_latest(tmp_path / "resumed")[0]) == []
    )


def test_resume_between_metrics_lines_logs_what_an_uninterrupted_run_logs(tmp_path, data):
    settings = dict(log_every=2, checkpoint_every=3, keep_checkpoints=0)
    _transformer_trainer(tmp_path / "straight", data, **settings).fit()
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    for path in (tmp_path / "crashed" / "checkpoints").glob("step-00000006.pt*"):
        path.unlink()  # a crash before step 6's checkpoint: the run resumes at step 3, between two metrics lines
    resumed = _transformer_trainer(tmp_path / "crashed", data, **settings)
    assert resumed.step == 3 and set(resumed.metrics_window)  # step 3's metrics, waiting for the line at step 4
    resumed.fit()

    def lines(run):
        return [{k: v for k, v in r.items() if k != "samples_per_second"} for r in read_metrics(tmp_path / run)]

    assert [r["step"] for r in lines("straight")] == [2, 4, 6]
    assert lines("crashed") == lines("straight")  # the line at step 4 averages steps 3 and 4 in both


def test_a_run_that_logs_no_metrics_lines_keeps_no_window_of_step_metrics(tmp_path, data):
    # log_every=None turns metrics lines off: the window of every step's metrics tensors grew for the whole run
    # (memory, on the GPU, and a copy in every checkpoint)
    trainer = _transformer_trainer(tmp_path / "run", data, log_every=None)
    trainer.fit(max_steps=3)
    assert trainer.metrics_window == {}
    assert ckpt.load_latest(tmp_path / "run")[0]["metrics_window"] == [{}]


def test_activation_checkpointing_switched_on_at_resume_changes_no_number(tmp_path, data):
    straight = _transformer_trainer(tmp_path / "straight", data)
    straight.fit()
    _transformer_trainer(tmp_path / "resumed", data).fit(max_steps=3)
    resumed = _transformer_trainer(tmp_path / "resumed", data, activation_checkpointing=True)
    assert resumed.raw_model.recompute_blocks
    resumed.fit()
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == [
        r["loss"] for r in read_metrics(tmp_path / "straight")
    ]
    straight_state, resumed_state = (
        ckpt.load_latest(tmp_path / "straight")[0],
        ckpt.load_latest(tmp_path / "resumed")[0],
    )
    assert state_differences(straight_state, resumed_state) == [
        ".configs.train.activation_checkpointing: False vs True"  # recorded as run; weights, moments, RNG equal
    ]


def test_tokenizer_resume_with_discriminator(tmp_path, data):
    def make(run_dir):
        seed_everything(0)
        tokenizer = MultiScaleVQVAE(tiny_configs()[0])
        losses = TokenizerLossConfig(disc_start=2, disc_channels=32, disc_layers=2)
        return TokenizerTrainer(tokenizer, losses, train_config(total_steps=5, betas=(0.5, 0.9)), run_dir, *data)

    straight = make(tmp_path / "straight")
    straight.fit()
    make(tmp_path / "resumed").fit(max_steps=3)
    resumed = make(tmp_path / "resumed")
    resumed.fit()
    expected = read_metrics(tmp_path / "straight")
    got = read_metrics(tmp_path / "resumed")
    assert [r["loss"] for r in got] == [r["loss"] for r in expected]
    assert [r["disc_loss"] for r in got[2:]] == [r["disc_loss"] for r in expected[2:]]
    assert torch.equal(straight.raw_model.quantizer.code_usage_ema, resumed.raw_model.quantizer.code_usage_ema)
    # Bit-identical final state, read back with the trainer's own loader: tokenizer and discriminator weights,
    # the tokenizer's EMA, both optimizers' moments, data position and RNG (one process on the CPU: no tolerance).
    final_straight, path = ckpt.load_latest(tmp_path / "straight")
    final_resumed, _ = ckpt.load_latest(tmp_path / "resumed")
    assert path.name == "step-00000005.pt" and set(final_straight["models"]) == {"model", "discriminator"}
    assert set(final_straight["optimizers"]) == {"model", "discriminator"}
    assert state_differences(final_straight, final_resumed) == []


def test_run_dir_of_another_config_is_refused(tmp_path, data):
    _transformer_trainer(tmp_path, data).fit(max_steps=1)
    with pytest.raises(ValueError, match=r"different config \(train.lr: 0.002 in the run, 0.001 now"):
        _transformer_trainer(tmp_path, data, lr=1e-3)
    # cadences may change between invocations
    assert _transformer_trainer(tmp_path, data, log_every=5, checkpoint_every=2).step == 1
    # checkpoints copied without their config.json still say what made them
    (tmp_path / "config.json").unlink()
    with pytest.raises(ValueError, match=r"different config \(train.lr: 0.002 in the run, 0.001 now"):
        _transformer_trainer(tmp_path, data, lr=1e-3)
    assert _transformer_trainer(tmp_path, data).step == 1


def test_worker_processes_give_the_same_batches(tmp_path, data):
    losses = {}
    for workers in (0, 1):
        trainer = _transformer_trainer(tmp_path / f"workers{workers}", data, total_steps=3, num_workers=workers)
        trainer.fit()
        losses[workers] = [r["loss"] for r in read_metrics(tmp_path / f"workers{workers}")]
    assert losses[0] == losses[1]


@pytest.mark.parametrize("damage", ["one-byte", "truncated"])
def test_resume_skips_a_damaged_newest_checkpoint_with_a_warning(tmp_path, data, caplog, damage):
    _transformer_trainer(tmp_path, data, checkpoint_every=1).fit(max_steps=3)
    newest, previous = ckpt.checkpoint_path(tmp_path, 3), ckpt.checkpoint_path(tmp_path, 2)
    content = bytearray(newest.read_bytes())
    if damage == "one-byte":
        content[len(content) // 2] ^= 0x10
    else:
        del content[len(content) // 2 :]
    newest.write_bytes(bytes(content))
    resumed = _transformer_trainer(tmp_path, data, checkpoint_every=1)
    assert resumed.step == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(newest) in message and str(previous) in message for message in warnings), warnings


# ------------------------------------------------------------------------------ crash-exact resume (CLI)
# Runs `nextscale ARGS` in a fresh interpreter; CRASH_AT=saved:N kills it with SIGKILL right after checkpoint N
# is complete, CRASH_AT=writing:N while checkpoint N is half written (its temporary file truncated to half).
_DRIVER = """
import os, signal, sys
import torch
from nextscale.cli import main
from nextscale.training import checkpoint

torch.set_num_threads(1)
mode, _, step = os.environ.get("CRASH_AT", "").partition(":")
name = f"step-{int(step or 0):08d}.pt"

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if mode == "saved":
    save_checkpoint = checkpoint.save_checkpoint
    def saved_then_die(path, state):
        save_checkpoint(path, state)
        if os.path.basename(path) == name:
            die()
    checkpoint.save_checkpoint = saved_then_die
elif mode == "writing":
    save = torch.save
    def half_written_then_die(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        if isinstance(f, str) and os.path.basename(f).startswith("." + name + "."):
            os.truncate(f, os.path.getsize(f) // 2)
            die()
    torch.save = half_written_then_die
sys.exit(main(sys.argv[1:]))
"""
REPO = Path(__file__).resolve().parents[2]
TINY_DATA = "fashion-mnist:tests/assets/fashion_mnist"


def _start(args: list[str], crash_at: str = "") -> subprocess.Popen:
    env = {**os.environ, "CRASH_AT": crash_at, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(process: subprocess.Popen, expected: int) -> None:
    output, _ = process.communicate(timeout=120)
    assert process.returncode == expected, output.decode(errors="replace")[-3000:]


def _kill_when_exists(process: subprocess.Popen, path: Path) -> None:
    """SIGKILL from outside at whatever the process is doing once ``path`` appears (or let it end first)."""
    while not path.exists():
        try:
            process.wait(timeout=0.005)  # poll: returns only if the process ended by itself
            return
        except subprocess.TimeoutExpired:
            continue
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=120)


def _training_commands(tmp_path: Path) -> dict[str, list[str]]:
    tokenizer = tmp_path / "tokenizer"
    torch.manual_seed(0)
    save_component(MultiScaleVQVAE(tiny_configs()[0]), tokenizer)
    common = "--preset tiny --steps 8 --batch-size 8 --checkpoint-every 1 --log-every 1 --eval-every none"
    common += f" --preview-every none --no-progress --data {TINY_DATA}"
    return {
        "train": ["train", "--tokenizer", str(tokenizer), "--ema-decay", "0.9", *common.split()],
        "train-tokenizer": [
            "train-tokenizer",
            *"--in-channels 1 --disc-start 3 --disc-channels 32 --disc-layers 2".split(),
            *common.split(),
        ],
    }


@pytest.mark.slow  # ~10 interpreter starts per command
@pytest.mark.parametrize("command", ["train", "train-tokenizer"])
def test_sigkilled_runs_resume_bit_identical_to_an_uninterrupted_one(tmp_path, command):
    """Kill the same command with SIGKILL after checkpoint 2, half-way through writing checkpoint 4, and from
    outside once checkpoint 6 exists, re-running it each time: the final model, EMA, optimizer, GradScaler,
    data position and RNG states equal those of an uninterrupted run bit for bit."""
    args = _training_commands(tmp_path)[command]
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    _finish(_start([*args, "--run-dir", str(straight)]), 0)

    run = [*args, "--run-dir", str(crashed)]
    _finish(_start(run, crash_at="saved:2"), -signal.SIGKILL)
    assert latest_checkpoint(crashed).name == "step-00000002.pt"
    _finish(_start(run, crash_at="writing:4"), -signal.SIGKILL)
    assert latest_checkpoint(crashed).name == "step-00000003.pt"
    assert list((crashed / "checkpoints").glob(".step-00000004.pt.*.tmp"))  # the half-written file is left behind
    _kill_when_exists(_start(run), ckpt.checkpoint_path(crashed, 6))
    _finish(_start(run), 0)

    expected, expected_path = ckpt.load_latest(straight)
    got, got_path = ckpt.load_latest(crashed)
    assert expected_path.name == got_path.name == "step-00000008.pt"
    assert state_differences(expected, got) == []  # bit-identical: weights, EMA, optimizers, sampler, RNG, ...
    assert [r["loss"] for r in read_metrics(crashed)] == [r["loss"] for r in read_metrics(straight)]
    assert [r["step"] for r in read_metrics(crashed)] == list(range(1, 9))
    assert not list((crashed / "checkpoints").glob("*.tmp"))  # stale temporaries are cleaned up
    assert all(ckpt.verify_checkpoint(path) for path in ckpt.list_checkpoints(crashed))


def test_a_run_resumed_under_fp16_starts_its_loss_scaler_afresh(tmp_path, data, monkeypatch):
    """--precision may change at a resume: checkpoints of a run without fp16 hold no loss-scaler state, and an fp16
    resume (on CUDA; its resolution emulated here) starts the scaler at the official 2**11 instead of failing."""
    _transformer_trainer(tmp_path, data, total_steps=4).fit(max_steps=2)
    from nextscale.training import loop

    monkeypatch.setattr(loop, "resolve_precision", lambda precision, device: precision)
    resumed = _transformer_trainer(tmp_path, data, total_steps=4, precision="fp16")
    assert resumed.step == 2 and resumed.scaler.is_enabled() and resumed.scaler.get_scale() == 2.0**11
