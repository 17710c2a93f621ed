"""Training STAR's masked-sampler head on a frozen text model: the draw of known positions, the loss, the frozen
model, the CLI from --init-from to `sample --masked-sampling`, and resume."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_cli import REPO, run_command
from training_helpers import read_metrics

from nextscale import Pipeline
from nextscale.training.export import load_run_model, load_run_pipeline
from nextscale.training.sampler_head import draw_known, hidden_position_mean
from nextscale.transformer.text_sampler_head import same_scale_bias


@pytest.fixture(scope="module")
def star_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny tokenizer and a tiny STAR model trained a few steps on the captioned scene assets."""
    root = tmp_path_factory.mktemp("sampler-head")
    tok, star = root / "tok", root / "star"
    tiny = f"--config {REPO}/configs/tiny_tokenizer.json --data fashion-mnist:{REPO}/tests/assets/fashion_mnist"
    assert run_command("train_tokenizer", f"{tiny} --run-dir {tok} --steps 2 --disc-start 100 --no-progress") == 0
    text = f"--config {REPO}/configs/tiny_text_transformer.json --tokenizer {tok} --no-progress"
    data = f"--data captions:{REPO}/tests/assets/scenes/train --eval-data captions:{REPO}/tests/assets/scenes/test"
    assert run_command("train", f"{text} {data} --run-dir {star} --steps 4") == 0
    return tok, star


def test_known_positions_follow_the_arccos_law():
    known = draw_known(4000, 50, torch.Generator().manual_seed(0))
    per_sample = known.float().mean(1)
    assert abs(per_sample.mean().item() - 2 / math.pi) < 0.02  # E[arccos(r) / (pi / 2)] = 2 / pi
    # the draw: r (B,), then (B, n) uniforms, from the given generator
    gen = torch.Generator().manual_seed(1)
    ratio = torch.arccos(torch.rand(3, generator=gen)) / (math.pi / 2)
    expected = torch.rand(3, 7, generator=gen) < ratio[:, None]
    assert torch.equal(draw_known(3, 7, torch.Generator().manual_seed(1)), expected)


def test_loss_averages_the_positions_not_shown():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    known = torch.tensor([[True, False, False], [True, True, False]])
    assert hidden_position_mean(values, known).item() == pytest.approx((2 + 3 + 6) / 3)
    assert hidden_position_mean(values, torch.ones_like(known)).item() == 0.0


def test_same_scale_mask_lets_each_scale_see_itself_and_the_start_token():
    bias = same_scale_bias(torch.tensor([3, 3, 4, 4, 4]), torch.float32)[0, 0]
    allowed = bias == 0
    assert allowed[0].all() and allowed[:, 0].all()  # the start token row and column
    assert allowed[1:3, 1:3].all() and allowed[3:, 3:].all()
    assert not allowed[1:3, 3:].any() and not allowed[3:, 1:3].any()


def test_head_training_freezes_the_model_and_samples_masked(star_run, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tok, star = star_run
    head = tmp_path / "head"
    common = f"--config configs/tiny_text_transformer.json --tokenizer {tok} --no-progress --init-from {star}"
    args = f"{common} --run-dir {head} --train-sampler-head --steps 4 --max-steps 2 --log-every 1 --eval-every 2"
    assert run_command("train", args) == 0
    assert run_command("train", args.replace(" --max-steps 2", "")) == 0  # resumes
    whole = tmp_path / "whole"
    assert run_command("train", args.replace(" --max-steps 2", "").replace(str(head), str(whole))) == 0
    trained, base = load_run_model(head, raw=True), load_run_model(star)  # --init-from takes the EMA weights
    assert trained.config.sampler_head and trained.config.sampler_from_scale == 2  # 3 scales: the last one
    for key, value in base.state_dict().items():  # the main model did not move
        assert torch.equal(trained.state_dict()[key], value), key
    fresh = type(trained)(trained.config).sampler_head.state_dict()
    assert any(not torch.equal(trained.sampler_head.state_dict()[k], v) for k, v in fresh.items())
    resumed, uninterrupted = trained.state_dict(), load_run_model(whole, raw=True).state_dict()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)  # exact resume
    lines = read_metrics(head)
    assert [line["step"] for line in lines if line.get("split", "train") == "train"] == [1, 2, 3, 4]
    assert all(0 < line["known"] < 1 for line in lines if "known" in line)
    config = json.loads((head / "config.json").read_text())
    assert config["objective"]["train_sampler_head"] and config["transformer"]["sampler_head"]

    assert run_command("export", f"--run {head} --out {tmp_path / 'pipe'}") == 0
    pipe = Pipeline.from_pretrained(tmp_path / "pipe")
    assert pipe.recommended_sampling == {"masked_sampling": True}
    masked = pipe(prompt=["a bag in the top left"], seed=0, cfg=2.0, masked_sampling=True, output_type="pt")
    plain = pipe(prompt=["a bag in the top left"], seed=0, cfg=2.0, output_type="pt")
    start = pipe.transformer.schedule.scale_slice(2).start
    assert torch.equal(masked.tokens[:, :start], plain.tokens[:, :start])


def test_a_head_keeps_the_sampling_its_starting_model_recommends(star_run, tmp_path, monkeypatch):
    """The head changes how the finest scales are drawn, not the cfg and top-k its model was tuned for: the export
    recommends both, also when the starting model is gone before a resume."""
    monkeypatch.chdir(REPO)
    tok, star = star_run
    start = tmp_path / "start"
    assert run_command("export", f"--run {star} --out {start}") == 0
    index = json.loads((start / "pipeline.json").read_text())
    (start / "pipeline.json").write_text(json.dumps({**index, "recommended_sampling": {"cfg": 3.0, "top_k": 10}}))
    head = tmp_path / "head"
    common = f"--config configs/tiny_text_transformer.json --tokenizer {tok} --no-progress --init-from {start}"
    args = f"{common} --run-dir {head} --train-sampler-head --steps 2 --log-every 1 --eval-every 2"
    assert run_command("train", f"{args} --max-steps 1") == 0
    start.rename(tmp_path / "gone")
    assert run_command("train", args) == 0  # resumed without its starting model
    assert run_command("export", f"--run {head} --out {tmp_path / 'pipe'}") == 0
    expected = {"cfg": 3.0, "top_k": 10, "masked_sampling": True}
    assert Pipeline.from_pretrained(tmp_path / "pipe").recommended_sampling == expected
    assert load_run_pipeline(head).recommended_sampling == expected


def test_the_step_is_the_heads_cross_entropy_on_hidden_positions(star_run):
    """The model's head path equals the head run by hand on the frozen model's hidden states."""
    from nextscale.transformer.conditioning import TextCondition

    _, star = star_run
    base = load_run_model(star, raw=True)
    config = dataclasses.replace(base.config, sampler_head=True, sampler_from_scale=2)
    model = type(base)(config)
    state = base.state_dict() | {f"sampler_head.{k}": v for k, v in model.sampler_head.state_dict().items()}
    model.load_state_dict(state)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    condition = TextCondition(torch.randn(2, 4, 384, generator=gen), torch.ones(2, 4, dtype=torch.long),
                              torch.randn(2, 384, generator=gen))  # fmt: skip
    teacher = torch.randn(2, model.schedule.total_tokens - 1, config.code_dim, generator=gen)
    start = model.schedule.offsets[2]
    codes = torch.randn(2, model.schedule.total_tokens - start, config.code_dim, generator=gen)
    with torch.no_grad():
        ours = model(condition, teacher, sampler_codes=codes)
        # by hand: the frozen model's final hidden states of the last scale (its only scale here: full attention)
        context = model.condition_context(condition)
        x = torch.cat((context.start[:, None] + model.start_pos, model.word_embed(teacher)), 1)
        x = x + model.level_embed(model.level_ids)
        rope = model.rope_rows(0, model.schedule.total_tokens)
        mask = model.training_mask(model.schedule.total_tokens, x.device, x.dtype)
        for block, text in zip(model.blocks, context.text):
            x = block(x, rope, text, context.text_bias, mask)
        levels = model.level_ids[0, start:]
        head_rope = torch.cat((rope[:1], rope[start:]))
        by_hand = model.sampler_head(context.sampler_start, x[:, start:], codes, levels, head_rope)
    assert torch.allclose(ours, by_hand, atol=1e-5)
    assert ours.shape == (2, model.schedule.total_tokens - start, config.vocab_size)
    assert F.cross_entropy(ours.reshape(-1, config.vocab_size), torch.zeros(ours.shape[0] * ours.shape[1],
                           dtype=torch.long)).isfinite()  # fmt: skip


def test_head_training_is_refused_without_a_trained_text_model(star_run, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tok, _ = star_run
    common = f"--config configs/tiny_text_transformer.json --tokenizer {tok} --no-progress --steps 1"
    with pytest.raises(ValueError, match="give it with --init-from"):
        run_command("train", f"{common} --run-dir {tmp_path / 'a'} --train-sampler-head")
    with pytest.raises(ValueError, match="goes with --train-sampler-head"):
        run_command("train", f"{common} --run-dir {tmp_path / 'b'} --sampler-from-scale 2")
    with pytest.raises(ValueError, match="--sampler-head-init goes with --train-sampler-head"):
        run_command("train", f"{common} --run-dir {tmp_path / 'b'} --sampler-head-init official")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_warm_head_starts_as_the_models_own_predictor(star_run):
    """Warm start: the head's logits equal the frozen model's at every position it samples, whatever codes it is
    shown; training then only adds what the known codes tell."""
    from nextscale.transformer.conditioning import TextCondition

    _, star = star_run
    base = load_run_model(star)
    model = type(base)(dataclasses.replace(base.config, sampler_head=True, sampler_from_scale=2)).eval()
    model.load_state_dict(
        base.state_dict() | {f"sampler_head.{k}": v for k, v in model.sampler_head.state_dict().items()}
    )
    model.sampler_head.warm_start(model.head)
    gen = torch.Generator().manual_seed(1)
    condition = TextCondition(torch.randn(3, 4, 384, generator=gen), torch.ones(3, 4, dtype=torch.long),
                              torch.randn(3, 384, generator=gen))  # fmt: skip
    teacher = torch.randn(3, model.schedule.total_tokens - 1, base.config.code_dim, generator=gen)
    start = model.schedule.offsets[2]
    with torch.no_grad():
        main = model(condition, teacher)[:, start:]
        for scale in (0.0, 1.0):
            codes = scale * torch.randn(3, model.schedule.total_tokens - start, base.config.code_dim, generator=gen)
            assert torch.equal(model(condition, teacher, sampler_codes=codes), main)
