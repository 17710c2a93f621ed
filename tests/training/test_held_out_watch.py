"""The held-out watch warns once when the held-out loss rises well above its lowest (memorising)."""

from nextscale.training.held_out_watch import HeldOutWatch


def test_warns_once_when_the_held_out_loss_rises_above_its_lowest():
    watch = HeldOutWatch(rise=0.1)
    assert [watch.update(step, loss) for step, loss in ((100, 6.0), (200, 4.8), (300, 5.2))] == [None] * 3
    warning = watch.update(400, 11.1)  # 131 % above 4.8
    assert warning.startswith("held-out loss 11.100 at step 400 is 131 % above its lowest, 4.800 at step 200")
    assert "memorising" in warning
    assert watch.update(500, 12.0) is None  # said once


def test_a_falling_or_noisy_loss_and_non_finite_values_stay_quiet():
    watch = HeldOutWatch(rise=0.1)
    for step, loss in enumerate((5.0, 4.0, 4.3, 3.9, 4.2, float("nan"), float("inf"), 3.5)):
        assert watch.update(step, loss) is None
    assert watch.lowest == (7, 3.5)


def test_a_resumed_run_remembers_the_lowest_held_out_loss(tmp_path, data):
    """The watch is checkpointed: after a resume it still compares with the lowest loss seen before it (and a
    warning already given is not given again)."""
    from training_helpers import tiny_configs, train_config

    from nextscale.tokenizer.vqvae import MultiScaleVQVAE
    from nextscale.training.config import TransformerObjective, seed_everything
    from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer

    def trainer():
        tokenizer_config, transformer_config = tiny_configs()
        seed_everything(0)
        objective = TransformerObjective()
        transformer = build_transformer(transformer_config, objective)
        config = train_config(total_steps=4, eval_every=1)
        return TransformerTrainer(transformer, MultiScaleVQVAE(tokenizer_config), objective, config, tmp_path, *data)

    first = trainer()
    first.fit(max_steps=2)
    first.held_out_watch.warned = True
    first.save_checkpoint()
    resumed = trainer()
    assert resumed.held_out_watch.lowest == first.held_out_watch.lowest and resumed.held_out_watch.lowest[0] >= 1
    assert resumed.held_out_watch.warned
