"""What only rank 0 of a distributed run does: copy the weights into a checkpoint's state, and print the
"interrupted at step N" line (the other ranks exit with the same status, silently)."""

from types import SimpleNamespace

import pytest
import torch
from training_helpers import tiny_configs, tiny_data, train_config

from nextscale import distributed
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training.config import TransformerObjective, seed_everything
from nextscale.training.interrupt import TrainingInterrupted
from nextscale.training.options import fit_and_report
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _trainer(run_dir, rank: int) -> TransformerTrainer:
    tokenizer_config, transformer_config = tiny_configs()
    seed_everything(0)
    objective = TransformerObjective()
    # A rank's place without a process group: the model stays unsharded, as under DDP.
    dist_info = distributed.DistInfo(rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"))
    return TransformerTrainer(
        build_transformer(transformer_config, objective),
        MultiScaleVQVAE(tokenizer_config),
        objective,
        train_config(ema_decay=0.5),
        run_dir,
        *tiny_data(),
        dist_info=dist_info,
    )


def test_only_rank_zero_copies_unsharded_weights_into_the_checkpoint_state(tmp_path):
    main = _trainer(tmp_path / "main", rank=0).checkpoint_state()
    other = _trainer(tmp_path / "other", rank=1).checkpoint_state()
    assert main["models"]["model"] and main["ema"]["module"]  # rank 0 writes them
    assert other["models"] == {"model": {}} and other["ema"] is None  # the others would throw copies away
    assert other["optimizers"].keys() == main["optimizers"].keys()


def test_full_state_dict_of_a_plain_model_skips_the_copy_where_it_is_not_kept():
    model = torch.nn.Linear(2, 3)
    assert distributed.full_state_dict(model, keep=False) == {}
    assert torch.equal(distributed.full_state_dict(model)["weight"], model.weight.detach())


def _interrupted(rank: int):
    def fit(max_steps):
        raise TrainingInterrupted(3, None)

    return SimpleNamespace(fit=fit, dist=SimpleNamespace(is_main=rank == 0))


def test_only_rank_zero_reports_an_interrupt_and_the_others_exit_with_its_status(capsys):
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3"):
        fit_and_report(_interrupted(0), None, (), "transformer")
    with pytest.raises(SystemExit) as caught:
        fit_and_report(_interrupted(1), None, (), "transformer")
    assert caught.value.code == 130  # the CLI's status for an interrupt on rank 0
    assert capsys.readouterr() == ("", "")
