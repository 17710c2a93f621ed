"""A run resumed with another --grad-accum at the same batch size (to go on with fewer or more processes) trains
on the same samples with the same optimizer state as an uninterrupted run; a cut that would change the data stream
is refused with the --grad-accum that resumes it."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Subset
from training_helpers import read_metrics, state_differences, tiny_configs, tiny_data, train_config

from nextscale import distributed
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TokenizerLossConfig, TransformerObjective, seed_everything
from nextscale.training.tokenizer_trainer import TokenizerTrainer
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _trainer(run_dir, data, dist_info=None, **overrides) -> TransformerTrainer:
    tokenizer_config, transformer_config = tiny_configs(deterministic=True)  # no random draws: comparable runs
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(**{"total_steps": 4, "ema_decay": 0.5, **overrides})
    return TransformerTrainer(transformer, tokenizer, objective, config, run_dir, *data, dist_info=dist_info)


def _final_differences(a, b) -> list[str]:
    first, second = (ckpt.load_checkpoint(ckpt.latest_checkpoint(run)) for run in (a, b))
    keys = ("step", "models", "ema", "optimizers")  # the sampler's position counts micro-steps: another unit
    # Float sums in another order (1e-8 here); another sample or a lost Adam moment differs by ~lr = 2e-3.
    return state_differences({k: first[k] for k in keys}, {k: second[k] for k in keys}, atol=1e-6, rtol=1e-5)


def test_resume_with_more_micro_steps_matches_an_uninterrupted_run(tmp_path):
    data = tiny_data()
    _trainer(tmp_path / "straight", data).fit()
    _trainer(tmp_path / "regrouped", data).fit(max_steps=2)  # micro-steps of 8 ...
    resumed = _trainer(tmp_path / "regrouped", data, grad_accum=2)  # ... then of 4, as on half the processes
    assert resumed.step == 2
    resumed.fit()
    straight, regrouped = (read_metrics(tmp_path / run) for run in ("straight", "regrouped"))
    assert [r["step"] for r in regrouped] == [1, 2, 3, 4]
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(straight, regrouped)) <= 1e-5
    assert _final_differences(tmp_path / "straight", tmp_path / "regrouped") == []


def test_a_cut_that_changes_the_epochs_is_refused_with_the_grad_accum_that_resumes(tmp_path):
    train, held_out = tiny_data()
    data = (Subset(train, range(20)), held_out)  # micro-steps of 8 use 16 samples per epoch, of 4 all 20
    _trainer(tmp_path / "run", data, checkpoint_every=1).fit(max_steps=1)
    with pytest.raises(ValueError) as caught:
        _trainer(tmp_path / "run", data, grad_accum=2)
    message = str(caught.value)
    assert "trained with --grad-accum 1 on 1 process(es)" in message
    assert "16 of the 20 samples" not in message and "20 of the 20 samples instead of 16" in message
    assert message.endswith("resume with --grad-accum 1 on 1 process(es)")
    assert _trainer(tmp_path / "run", data).step == 1  # the command it names resumes


def test_a_tokenizer_keeps_its_micro_steps_and_says_how_to_resume(tmp_path):
    tokenizer_config, _ = tiny_configs()
    data = tiny_data()

    def trainer(**overrides):
        seed_everything(0)
        config = train_config(**{"total_steps": 2, "eval_every": None, **overrides})
        return TokenizerTrainer(MultiScaleVQVAE(tokenizer_config), TokenizerLossConfig(), config, tmp_path, *data)

    trainer().fit(max_steps=1)
    with pytest.raises(ValueError, match=r"per micro-step, so their size must stay: resume with --grad-accum 1 on"):
        trainer(grad_accum=2)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_process_start(rank: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group() as dist_info:
        trainer = _trainer(f"{root}/regrouped", tiny_data(), dist_info=dist_info, strategy="ddp", **WINDOWED)
        trainer.fit(max_steps=3)


# One metrics line at step 4 and a checkpoint at step 2: the checkpoint holds a window of 2 steps not yet logged.
WINDOWED = dict(log_every=4, checkpoint_every=2)


@pytest.mark.slow  # about 10 s alone: a 2-process DDP start on gloo
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_processes_resumed_on_one_with_twice_the_micro_steps_match_one_process(tmp_path):
    data = tiny_data()
    _trainer(tmp_path / "straight", data, grad_accum=2, **WINDOWED).fit()
    mp.spawn(_two_process_start, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)  # micro-steps of 8
    ckpt.checkpoint_path(tmp_path / "regrouped", 3).unlink()  # the 2 processes died after step 2's checkpoint
    _trainer(tmp_path / "regrouped", data, grad_accum=2, **WINDOWED).fit()  # one process, micro-steps of 4
    assert _final_differences(tmp_path / "straight", tmp_path / "regrouped") == []
    # the line of step 4 averages steps 1-4 as in the uninterrupted run: the 2 processes' window of steps 1-2 is kept
    (straight,), (regrouped,) = (read_metrics(tmp_path / run) for run in ("straight", "regrouped"))
    assert straight["step"] == regrouped["step"] == 4 and set(straight) == set(regrouped)
    differing = {name for name in set(straight) - {"split"} if abs(straight[name] - regrouped[name]) > 1e-5}
    assert differing == {"samples_per_second"}
