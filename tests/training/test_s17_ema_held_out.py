"""Held-out metrics of the EMA weights (the ones `export` writes) logged beside the raw weights', the held-out watch
following the exported weights, and old metrics files and checkpoints still readable."""

from training_helpers import read_metrics, state_differences, tiny_configs, train_config

from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TransformerObjective, seed_everything
from nextscale.training.curves import panel_curves
from nextscale.training.curves import read_metrics as read_series
from nextscale.training.held_out_watch import HeldOutWatch
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer


def _trainer(run_dir, data, **overrides) -> TransformerTrainer:
    tokenizer_config, transformer_config = tiny_configs()  # dropout and drop-path on: the RNG must resume too
    seed_everything(0)
    objective = TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(**{"total_steps": 3, "ema_decay": 0.5, "eval_every": 1, "eval_samples": 8, **overrides})
    return TransformerTrainer(transformer, MultiScaleVQVAE(tokenizer_config), objective, config, run_dir, *data)


def test_a_run_without_ema_scores_and_watches_its_raw_weights(tmp_path, data):
    trainer = _trainer(tmp_path, data, ema_decay=None, total_steps=1)
    trainer.fit()
    assert read_metrics(tmp_path, "eval_ema") == [] and not trainer.held_out_watch.of_ema
    assert trainer.held_out_watch.lowest == (1, read_metrics(tmp_path, "eval")[0]["loss"])


def test_an_ema_run_scores_both_weights_watches_the_exported_ones_and_resumes_exactly(tmp_path, data):
    _trainer(tmp_path / "straight", data, eval_every=None, total_steps=2).fit()
    first = _trainer(tmp_path / "run", data, total_steps=2)
    first.fit(max_steps=1)
    resumed = _trainer(tmp_path / "run", data, total_steps=2)
    assert resumed.held_out_watch.lowest == first.held_out_watch.lowest and resumed.held_out_watch.of_ema
    resumed.fit()
    raw, ema = (read_metrics(tmp_path / "run", split) for split in ("eval", "eval_ema"))
    assert [r["step"] for r in raw] == [r["step"] for r in ema] == [1, 2]
    assert set(raw[-1]) == set(ema[-1]) and {"loss", "scale_loss/scale0", "token_error/scale0"} <= set(ema[-1])
    # each split scores its own weights (the EMA of decay 0.5 lags the raw weights: other numbers)
    assert raw[-1]["loss"] == resumed._held_out_metrics(resumed.model)["loss"]
    assert ema[-1]["loss"] == resumed._held_out_metrics(resumed.ema.module)["loss"] != raw[-1]["loss"]
    assert resumed.held_out_watch.lowest[1] == min(r["loss"] for r in ema)
    # scoring both weights changed nothing of the training: the same state as a run without evaluation
    keys = ("step", "models", "ema", "optimizers", "scaler", "sampler", "rng")
    straight, evaluated = (ckpt.load_latest(tmp_path / run)[0] for run in ("straight", "run"))
    assert state_differences({k: straight[k] for k in keys}, {k: evaluated[k] for k in keys}) == []


def test_the_watch_names_the_ema_weights_and_starts_afresh_on_another_loss():
    watch = HeldOutWatch(of_ema=True)
    assert watch.update(1, 4.0) is None
    assert watch.update(2, 5.0).startswith("held-out loss 5.000 of the EMA weights at step 2 is 25 % above")
    older = {"lowest": [7, 1.5], "warned": True}  # an older checkpoint's watch: the raw weights' loss
    for of_ema, carried in ((True, False), (False, True)):
        resumed = HeldOutWatch(of_ema=of_ema)
        resumed.load_state_dict(older)
        assert (resumed.lowest == (7, 1.5) and resumed.warned) == carried
    again = HeldOutWatch(of_ema=True)
    again.load_state_dict(watch.state_dict())
    assert again.lowest == (1, 4.0) and again.warned


RECORDS = [
    {"step": 10, "split": "train", "loss": 5.0},
    {"step": 10, "split": "eval", "loss": 4.5, "scale_loss/scale0": 2.0},
    {"step": 10, "split": "eval_ema", "loss": 4.8, "scale_loss/scale0": 2.2},
    {"step": 20, "split": "eval", "loss": 4.2, "scale_loss/scale0": 1.5},
    {"step": 20, "split": "eval_ema", "loss": 4.1, "scale_loss/scale0": 1.4},
]


def test_plot_panels_draw_the_ema_held_out_loss_beside_the_raw_one_and_old_runs_as_before(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(f"{record}\n".replace("'", '"') for record in RECORDS))
    series = read_series(tmp_path)
    assert panel_curves(series, "eval", "loss") == {
        "raw weights": [(10, 4.5), (20, 4.2)],
        "EMA weights": [(10, 4.8), (20, 4.1)],
    }
    assert panel_curves(series, "eval", "scale_loss") == {"scale0": [(10, 2.0), (20, 1.5)]}  # per scale: raw only
    old = {split: metrics for split, metrics in series.items() if split != "eval_ema"}  # a run before eval_ema
    assert panel_curves(old, "eval", "loss") == {"loss": [(10, 4.5), (20, 4.2)]}
