"""STAR token dropping (official ``drop_scale_length``) and the caption-dropout length rule, on tiny models:
the kept positions' logits equal the full forward with the dropped keys masked out, the draw is the official one,
the loss is the mean over kept tokens, held-out evaluation stays on full sequences, training resumes bit for bit,
and bad settings are refused in one line."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_cli import REPO, run_command
from torch.utils.data import Dataset
from training_helpers import read_metrics, state_differences, tiny_configs, train_config

from nextscale.presets import star_tiny
from nextscale.pretrained import save_component
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.training import checkpoint as ckpt
from nextscale.training.config import TransformerObjective, config_differences, seed_everything
from nextscale.training.metrics import format_metrics, metric_mean, reduce_over_ranks
from nextscale.training.token_dropping import kept_positions, per_scale_mean_of_kept, token_drop_start
from nextscale.training.transformer_trainer import TransformerTrainer, build_transformer
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

SIDES = (1, 2, 4)  # L = 21; scale 2 starts at position 5
LENGTH, LAST_START = 21, 5
CODE_DIM, TEXT_DIM = 8, 24
SHORT, LONG = "a bag", "a bag in the top left corner"  # 5 and 28 characters


# ------------------------------------------------------------------------------------------------ the model
def tiny_model(attention: str = "dense") -> TextScaleTransformer:
    torch.manual_seed(0)
    config = TextTransformerConfig.from_depth(
        2, embed_dim=64, num_heads=2, vocab_size=64, code_dim=CODE_DIM, scale_sides=SIDES, text_dim=TEXT_DIM
    )
    model = TextScaleTransformer(config).use_attention_mask(attention).eval()
    with torch.no_grad():  # non-zero biases: every path matters
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.3)
    return model


def text_and_teacher(batch: int = 3) -> tuple[TextCondition, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(batch, 5, TEXT_DIM, generator=generator)
    mask = (torch.arange(5)[None] < torch.tensor([5, 3, 4])[:batch, None]).long()
    condition = TextCondition(hidden, mask, torch.randn(batch, TEXT_DIM, generator=generator))
    return condition, torch.randn(batch, LENGTH - 1, CODE_DIM, generator=generator)


def full_forward_hiding(model: TextScaleTransformer, condition, teacher, keep: torch.Tensor) -> torch.Tensor:
    """The reference: the full sequence under the block-causal mask with -inf at every dropped key column."""
    levels = model.schedule.level_ids()
    bias = torch.zeros(LENGTH, LENGTH).masked_fill_(levels[None, :] > levels[:, None], float("-inf"))
    dropped = torch.ones(LENGTH, dtype=torch.bool)
    dropped[keep] = False
    bias[:, dropped] = float("-inf")  # every query keeps the start token, so no row is all -inf
    model.use_attention_mask("dense")
    model.dense_attn_bias = bias[None, None]
    try:
        return model(condition, teacher)
    finally:
        model.dense_attn_bias = None  # rebuilt from the levels on next use


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize(("from_scale", "keep_tokens"), [(2, 14), (1, 9)])
@pytest.mark.parametrize("attention", ["dense", "flex"])
def test_kept_logits_equal_the_full_forward_with_dropped_keys_hidden(from_scale, keep_tokens, attention):
    model = tiny_model(attention)
    condition, teacher = text_and_teacher()
    start = token_drop_start(model.schedule, keep_tokens, from_scale)
    keep = kept_positions(LENGTH, start, keep_tokens, torch.Generator().manual_seed(3))
    with torch.no_grad():
        dropped = model(condition, teacher, keep=keep)  # (B, N, V)
        plain = model(condition, teacher)
        reference = full_forward_hiding(model, condition, teacher, keep)[:, keep]
    assert dropped.shape == (3, keep_tokens, 64)
    assert torch.allclose(dropped, reference, atol=2e-6, rtol=0)
    # the dropped keys matter: the positions after the start differ from the plain full forward
    assert (dropped[:, start:] - plain[:, keep[start:]]).abs().max() > 1e-4
    # (b) positions before the drop start never attend to the droppable scales: unchanged
    assert torch.allclose(dropped[:, :start], plain[:, :start], atol=2e-6, rtol=0)


def test_dropping_runs_with_activation_checkpointing_and_gradients():
    model = tiny_model().train()
    condition, teacher = text_and_teacher()
    keep = kept_positions(LENGTH, LAST_START, 12, torch.Generator().manual_seed(5))
    grads = []
    for recompute in (False, True):
        model.use_activation_checkpointing(recompute).zero_grad()
        torch.manual_seed(7)  # the same drop-path draws
        model(condition, teacher, keep=keep).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_model_refuses_bad_positions():
    model = tiny_model()
    condition, teacher = text_and_teacher()
    with pytest.raises(ValueError, match=r"increasing positions in 0..20"):
        model(condition, teacher, keep=torch.tensor([0, 3, 2]))
    with pytest.raises(ValueError, match=r"increasing positions in 0..20"):
        model(condition, teacher, keep=torch.tensor([0, 21]))
    with pytest.raises(TypeError, match="int64"):
        model(condition, teacher, keep=torch.tensor([0.0, 1.0]))


# ------------------------------------------------------------------------------------------------ the draw
@pytest.mark.parametrize(("start", "keep_tokens"), [(5, 14), (1, 9), (5, 5)])
def test_the_dropped_set_is_the_official_randperm_draw(start, keep_tokens):
    kept = kept_positions(LENGTH, start, keep_tokens, torch.Generator().manual_seed(11))
    generator = torch.Generator().manual_seed(11)
    official = torch.arange(start, LENGTH)[torch.randperm(LENGTH - start, generator=generator)[: LENGTH - keep_tokens]]
    assert sorted(set(range(LENGTH)) - set(kept.tolist())) == sorted(official.tolist())
    assert kept.tolist() == sorted(kept.tolist()) and len(kept) == keep_tokens
    assert kept[:start].tolist() == list(range(start))  # everything before the start is kept


def test_without_a_generator_the_draw_comes_from_the_global_cpu_rng():
    torch.manual_seed(4)
    kept = kept_positions(LENGTH, 5, 10)
    assert torch.equal(kept, kept_positions(LENGTH, 5, 10, torch.Generator().manual_seed(4)))


def test_per_scale_means_of_kept_tokens():
    values = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    levels = torch.tensor([0, 1, 1, 2])
    assert per_scale_mean_of_kept(values, levels, 4).tolist()[0][:3] == [1.0, 3.0, 6.0]
    assert per_scale_mean_of_kept(values, levels, 4)[0, 3].isnan()  # no token of scale 3 kept


def test_a_scale_without_a_value_is_averaged_over_the_values_present_and_otherwise_left_out():
    nan = float("nan")
    steps = [torch.tensor([1.0, nan, nan]), torch.tensor([3.0, 4.0, nan])]
    mean = metric_mean(steps)  # micro-batches, or the steps of one metrics line
    assert mean[:2].tolist() == [2.0, 4.0] and mean[2].isnan()
    assert metric_mean([torch.tensor(nan), torch.tensor(1.0)]).isnan()  # a NaN loss is never hidden
    reduced = reduce_over_ranks({"loss": torch.tensor(2.0), "scale_loss": mean})
    assert reduced == {"loss": 2.0, "scale_loss/scale0": 2.0, "scale_loss/scale1": 4.0}  # no scale2 entry
    assert format_metrics({"loss": 2.0, "acc/scale0": 0.5, "acc/scale2": 0.25}) == "loss=2, acc=[0.5 - 0.25]"


def _reduce_on_two_ranks(rank: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0")
    from nextscale import distributed

    nan = float("nan")
    mine = [torch.tensor([0.5, nan, nan]), torch.tensor([0.7, 0.2, nan])][rank]
    with distributed.process_group(device="cpu"):
        reduced = reduce_over_ranks({"loss": torch.tensor(1.0 + rank), "scale_loss": mine})
    if rank == 0:
        Path(out).write_text(json.dumps(reduced))


def test_ranks_average_the_scale_values_they_have(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_reduce_on_two_ranks, args=(port, str(tmp_path / "out.json")), nprocs=2, join=True)
    reduced = json.loads((tmp_path / "out.json").read_text())
    assert reduced == {"loss": 1.5, "scale_loss/scale0": pytest.approx(0.6), "scale_loss/scale1": pytest.approx(0.2)}


# ---------------------------------------------------------------------------------------- settings and errors
def test_drop_start_defaults_to_the_last_scale_as_the_official_1024_stage():
    from nextscale.scales import SIDES_1024, ScaleSchedule

    schedule = ScaleSchedule(SIDES_1024)
    assert schedule.total_tokens == 9451
    assert token_drop_start(schedule, 8800, None) == 5355  # the 64 x 64 map, scale index 13


@pytest.mark.parametrize(
    ("keep_tokens", "from_scale", "message"),
    [
        (21, None, r"--keep-tokens must be in 5..20 for scales \(1, 2, 4\).*got 21"),
        (4, None, r"--keep-tokens must be in 5..20 .*the 5 before scale 2 are always kept, got 4"),
        (0, 1, r"--keep-tokens must be in 1..20"),
        (10, 0, r"--drop-tokens-from-scale must be a scale index in 1..2 \(scale 0 is the start token\), got 0"),
        (10, 3, r"--drop-tokens-from-scale must be a scale index in 1..2"),
    ],
)
def test_bad_settings_name_the_valid_range(keep_tokens, from_scale, message):
    from nextscale.scales import ScaleSchedule

    with pytest.raises(ValueError, match=message):
        token_drop_start(ScaleSchedule(SIDES), keep_tokens, from_scale)


def test_objective_refuses_inconsistent_settings():
    with pytest.raises(ValueError, match="give --keep-tokens N too"):
        TransformerObjective(drop_tokens_from_scale=1)
    with pytest.raises(ValueError, match="use --progressive 0"):
        TransformerObjective(keep_tokens=10, progressive=0.5)
    with pytest.raises(ValueError, match="--keep-tokens must be >= 1"):
        TransformerObjective(keep_tokens=0)
    with pytest.raises(ValueError, match="--caption-drop-min-chars must be >= 0"):
        TransformerObjective(caption_drop_min_chars=-1)


@pytest.mark.parametrize(
    ("settings", "named"),
    [({"keep_tokens": 10}, "--keep-tokens only apply"), ({"caption_drop_min_chars": 21}, "--caption-drop-min-chars")],
)
def test_class_models_refuse_the_text_options(tmp_path, data, settings, named):
    tokenizer_config, transformer_config = tiny_configs()
    objective = TransformerObjective(**settings)
    model = build_transformer(transformer_config, objective)
    with pytest.raises(ValueError, match=f"{named}.*text \\(STAR\\) models; this run trains a class-conditional"):
        TransformerTrainer(model, MultiScaleVQVAE(tokenizer_config), objective, train_config(), tmp_path / "r", *data)
    assert not (tmp_path / "r").exists()


def test_runs_made_before_the_options_existed_still_resume():
    current = {"objective": dataclasses.asdict(TransformerObjective())}
    added = ("keep_tokens", "drop_tokens_from_scale", "caption_drop_min_chars")
    older = {"objective": {k: v for k, v in current["objective"].items() if k not in added}}
    assert config_differences(older, current) == []
    dropping = {"objective": dataclasses.asdict(TransformerObjective(keep_tokens=10))}
    assert config_differences(older, dropping) == ["objective.keep_tokens: None in the run, 10 now"]


# --------------------------------------------------------------------------------------- through the trainer
class Captioned(Dataset):
    """Fashion-MNIST images with a short caption (odd indices) or a long one (even indices)."""

    def __init__(self, images):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        image, label = self.images[index]
        name = self.images.classes[label]
        return image, f"a {name} in the middle of the picture" if index % 2 == 0 else f"a {name}"


@pytest.fixture(scope="module")
def encoder():
    from nextscale.text import load_default_text_encoder

    return load_default_text_encoder()


def text_trainer(run_dir, data, encoder, deterministic=False, objective=None, **overrides):
    tokenizer_config, _ = tiny_configs()
    _, transformer_config = star_tiny()
    if deterministic:
        transformer_config = dataclasses.replace(transformer_config, drop_path_rate=0.0, cond_drop_rate=0.0)
    seed_everything(0)
    tokenizer = MultiScaleVQVAE(tokenizer_config)
    objective = objective or TransformerObjective()
    transformer = build_transformer(transformer_config, objective)
    config = train_config(**{"total_steps": 6, "grad_accum": 2, "ema_decay": 0.5, **overrides})
    train, test = (Captioned(part) for part in data)
    return TransformerTrainer(transformer, tokenizer, objective, config, run_dir, train, test, text_encoder=encoder)


def first_batch(trainer):
    from torch.utils.data import default_collate

    return default_collate([trainer.train_dataset[i] for i in range(4)])


def test_loss_is_the_mean_cross_entropy_over_kept_tokens(tmp_path, data, encoder):
    objective = TransformerObjective(keep_tokens=12)
    trainer = text_trainer(tmp_path / "run", data, encoder, deterministic=True, objective=objective)
    assert trainer.drop_start == LAST_START
    batch = first_batch(trainer)
    trainer.raw_model.train()
    torch.manual_seed(21)
    metrics = trainer.train_step(batch)
    torch.manual_seed(21)
    keep = kept_positions(LENGTH, LAST_START, 12)  # the same draw from the global CPU RNG
    tokens, condition, teacher = trainer.prepare(batch)
    with torch.no_grad():
        logits = trainer.raw_model(condition, teacher, keep=keep)
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, keep].reshape(-1))
    assert metrics["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    per_token = F.cross_entropy(logits.transpose(1, 2), tokens[:, keep], reduction="none")  # (B, N)
    assert metrics["scale_loss"][2].item() == pytest.approx(per_token[:, LAST_START:].mean().item(), rel=1e-6)
    assert metrics["scale_loss"][1].item() == pytest.approx(per_token[:, 1:LAST_START].mean().item(), rel=1e-6)


def test_held_out_evaluation_stays_on_full_sequences(tmp_path, data, encoder):
    full = text_trainer(tmp_path / "full", data, encoder, eval_samples=8).run_evaluation()
    objective = TransformerObjective(keep_tokens=9)
    dropping = text_trainer(tmp_path / "dropping", data, encoder, objective=objective, eval_samples=8)
    assert dropping.run_evaluation() == full  # same weights, same numbers: nothing was dropped


def test_training_with_dropping_resumes_like_an_uninterrupted_run(tmp_path, data, encoder):
    objective = TransformerObjective(keep_tokens=12)  # drop-path and caption dropout on: every stream must resume
    straight = text_trainer(tmp_path / "straight", data, encoder, objective=objective)
    straight.fit()
    text_trainer(tmp_path / "resumed", data, encoder, objective=objective).fit(max_steps=3)
    # activation checkpointing switched on at the resume: recomputation must not draw again
    resumed = text_trainer(tmp_path / "resumed", data, encoder, objective=objective, activation_checkpointing=True)
    assert resumed.step == 3
    resumed.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "straight")]
    assert [r["loss"] for r in read_metrics(tmp_path / "resumed")] == losses
    # the final checkpoints (weights, EMA, optimizer moments, data position, RNG) are bit-identical; only the
    # recorded activation_checkpointing switch differs
    (a, _), (b, _) = ckpt.load_latest(tmp_path / "straight"), ckpt.load_latest(tmp_path / "resumed")
    assert state_differences(a, b) == [".configs.train.activation_checkpointing: False vs True"]
    # the option is in effect: the first step differs from full-sequence training
    text_trainer(tmp_path / "full", data, encoder).fit(max_steps=1)
    assert read_metrics(tmp_path / "full")[0]["loss"] != losses[0]


def finite_records(run_dir) -> list[dict]:
    """The run's metrics.jsonl lines; fails on a NaN or infinity anywhere (json reads them as constants)."""

    def refuse(constant: str):
        raise AssertionError(f"{run_dir}/metrics.jsonl holds {constant}")

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def test_a_scale_with_no_kept_token_is_left_out_of_the_metrics_never_nan(tmp_path, data, encoder):
    # --keep-tokens 1 --drop-tokens-from-scale 1: only the start token stays, every token of scales 1 and 2 goes
    objective = TransformerObjective(keep_tokens=1, drop_tokens_from_scale=1)
    text_trainer(tmp_path / "run", data, encoder, objective=objective, total_steps=4, eval_every=2).fit()
    records = finite_records(tmp_path / "run")
    train = [record for record in records if record["split"] == "train"]
    assert [record["step"] for record in train] == [1, 2, 3, 4]
    for record in train:
        per_scale = sorted(name for name in record if name.startswith("scale_"))
        assert per_scale == ["scale_accuracy/scale0", "scale_loss/scale0"]
    # held-out evaluation runs on full sequences: every scale has its value
    assert all(f"scale_loss/scale{k}" in record for record in records if record["split"] == "eval" for k in range(3))
    assert run_command("plot", f"--run {tmp_path / 'run'}") == 0
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_scales_kept_in_some_micro_batches_only_average_what_was_kept_and_resume(tmp_path, data, encoder):
    import shutil

    # one of the 20 positions after the start token is kept per micro-batch: one of scale 1's 4, or of scale 2's 16
    objective = TransformerObjective(keep_tokens=2, drop_tokens_from_scale=1)
    options = dict(objective=objective, log_every=2, checkpoint_every=3, keep_checkpoints=0)
    text_trainer(tmp_path / "straight", data, encoder, **options).fit()
    shutil.copytree(tmp_path / "straight", tmp_path / "crashed")
    for path in (tmp_path / "crashed" / "checkpoints").glob("step-00000006.pt*"):
        path.unlink()  # resumes at step 3, whose metrics (a NaN for a scale it did not keep) wait for step 4's line
    resumed = text_trainer(tmp_path / "crashed", data, encoder, **options)
    assert resumed.step == 3 and resumed.metrics_window["scale_loss"][0].isnan().any()
    resumed.fit()

    def lines(run):
        return [{k: v for k, v in r.items() if k != "samples_per_second"} for r in finite_records(tmp_path / run)]

    assert [r["step"] for r in lines("straight")] == [2, 4, 6]
    assert lines("crashed") == lines("straight")
    assert all("scale_loss/scale0" in record for record in lines("straight"))
    assert run_command("plot", f"--run {tmp_path / 'crashed'}") == 0


# ------------------------------------------------------------------------------------- caption dropout rule
def conditions(captions: list[str], min_chars: int | None) -> TextCondition:
    batch = len(captions)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(batch, 3, TEXT_DIM, generator=generator)
    null = TextCondition(torch.zeros(1, 2, TEXT_DIM), torch.ones(1, 2, dtype=torch.long), torch.zeros(1, TEXT_DIM))
    droppable = None if min_chars is None else torch.tensor([len(c) >= min_chars for c in captions])
    return TextCondition(hidden, torch.ones(batch, 3, dtype=torch.long), hidden[:, 0], null, droppable)


def dropped_rows(condition: TextCondition, generator: torch.Generator) -> torch.Tensor:
    return (condition.drop(0.1, generator).pooled == 0).all(1)  # the null row's pooled vector is 0


def test_only_captions_of_the_minimum_length_are_dropped_at_the_rate():
    captions = [SHORT, LONG] * 2000
    generator = torch.Generator().manual_seed(5)
    dropped = dropped_rows(conditions(captions, 21), generator)
    long = torch.tensor([len(c) >= 21 for c in captions])
    assert not dropped[~long].any()  # 20 characters or fewer: never dropped
    assert dropped[long].float().mean().item() == pytest.approx(0.1, abs=0.02)
    # the draw is the same one torch.rand(B) as without the rule, the rule applied after it
    draw = torch.rand(len(captions), generator=torch.Generator().manual_seed(5)) < 0.1
    assert torch.equal(dropped, draw & long)
    assert torch.equal(generator.get_state(), _after_one_draw(5, len(captions)))


def test_the_default_drops_as_before():
    captions = [SHORT, LONG] * 50
    before = torch.rand(len(captions), generator=torch.Generator().manual_seed(9)) < 0.1  # the old rule
    for min_chars in (None, 0):  # no mask, or a mask that lets every caption be dropped
        generator = torch.Generator().manual_seed(9)
        assert torch.equal(dropped_rows(conditions(captions, min_chars), generator), before)
        assert torch.equal(generator.get_state(), _after_one_draw(9, len(captions)))


def _after_one_draw(seed: int, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    torch.rand(batch, generator=generator)
    return generator.get_state()


def test_trainer_marks_droppable_captions(tmp_path, data, encoder):
    default = text_trainer(tmp_path / "default", data, encoder)
    batch = first_batch(default)
    lengths = [len(caption) for caption in batch[1]]
    assert min(lengths) <= 20 < max(lengths)  # both kinds in the batch
    assert default.prepare(batch)[1].droppable is None  # the code path of before
    official = text_trainer(
        tmp_path / "official", data, encoder, objective=TransformerObjective(caption_drop_min_chars=21)
    )
    assert official.prepare(batch)[1].droppable.tolist() == [n > 20 for n in lengths]


def test_caption_rule_training_equals_the_default_when_every_caption_is_long_enough(tmp_path, data, encoder):
    text_trainer(tmp_path / "default", data, encoder).fit(max_steps=2)
    every = TransformerObjective(caption_drop_min_chars=1)  # every caption has >= 1 character: all droppable
    text_trainer(tmp_path / "every", data, encoder, objective=every).fit(max_steps=2)
    none = TransformerObjective(caption_drop_min_chars=1000)  # no caption is dropped: other losses
    text_trainer(tmp_path / "none", data, encoder, objective=none).fit(max_steps=2)
    losses = {run: [r["loss"] for r in read_metrics(tmp_path / run)] for run in ("default", "every", "none")}
    assert losses["every"] == losses["default"]
    assert losses["none"] != losses["default"]


# ------------------------------------------------------------------------------------------------- the CLI
def test_cli_flags_reach_the_run_and_bad_values_are_refused(tmp_path, monkeypatch):
    from nextscale.cli import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    assert "longer than 20 characters: 21" in " ".join(parser.format_help().split())
    monkeypatch.chdir(REPO)
    tokenizer = tmp_path / "tokenizer"
    seed_everything(0)
    save_component(MultiScaleVQVAE(tiny_configs()[0]), tokenizer)
    common = f"--tokenizer {tokenizer} --steps 2 --no-progress --eval-every none --preview-every none"
    star = f"--config configs/tiny_text_transformer.json {common}"
    options = "--keep-tokens 12 --drop-tokens-from-scale 2 --caption-drop-min-chars 21"
    assert run_command("train", f"{star} --run-dir {tmp_path / 'star'} {options}") == 0
    objective = json.loads((tmp_path / "star" / "config.json").read_text())["objective"]
    assert {name: objective[name] for name in ("keep_tokens", "drop_tokens_from_scale", "caption_drop_min_chars")} == {
        "keep_tokens": 12,
        "drop_tokens_from_scale": 2,
        "caption_drop_min_chars": 21,
    }
    assert read_metrics(tmp_path / "star")[-1]["step"] == 2
    with pytest.raises(ValueError, match=r"--keep-tokens must be in 5..20 for scales \(1, 2, 4\)"):
        run_command("train", f"{star} --run-dir {tmp_path / 'long'} --keep-tokens 21")
    with pytest.raises(ValueError, match="only apply to text \\(STAR\\) models"):
        run_command(
            "train", f"--config configs/tiny_transformer.json {common} --run-dir {tmp_path / 'c'} --keep-tokens 9"
        )
