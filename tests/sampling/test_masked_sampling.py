"""STAR's masked sampling ("Causal-Driven Stable Sampling") and the star-1024-sampler checkpoint's head.

No official fixture covers this path, so the loop is held to a literal transcription of the official ``w_mask``
branch (``models/var_drop.py``, ``utils/mask_utils.py``; STAR_REFERENCE.md section 9) written below, and the
converter to the released key list and shapes."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_pipelines import tiny_text_transformer

from nextscale import Pipeline
from nextscale.cli import main
from nextscale.presets import tiny
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.logits import classifier_free_guidance, filter_logits
from nextscale.sampling.masked_sampling import reveal_counts, sample_masked_scale, step_plan
from nextscale.sampling.text_pipeline import TextPipeline
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.text_model import TextScaleTransformer, transfer_to_schedule
from nextscale.transformer.text_official import (
    infer_official_star_config,
    load_official_star,
    official_key_to_ours,
    ours_key_to_official,
)
from reference_fixtures import REFERENCE, require

TEXT_DIM = 8
SAMPLER_RELEASE = "d30_1024_sampler(enable_adaptive_norm=True)"


def with_sampler_head(model: TextScaleTransformer, from_scale: int = 2) -> TextScaleTransformer:
    """The same main weights plus a freshly initialised masked-sampler head."""
    config = dataclasses.replace(model.config, sampler_head=True, sampler_from_scale=from_scale)
    grown = TextScaleTransformer(config)
    grown.init_weights(init_head=1.0)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(key.startswith("sampler_head.") for key in missing)
    with torch.no_grad():  # a non-trivial head: near-uniform logits would hide ordering bugs
        grown.sampler_head.head.weight.mul_(50)
    return grown.eval()


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    return tiny_text_transformer(text_dim=TEXT_DIM).eval()


@pytest.fixture(scope="module")
def model(plain):
    torch.manual_seed(1)
    return with_sampler_head(plain)


@pytest.fixture(scope="module")
def tokenizer():
    torch.manual_seed(2)
    return MultiScaleVQVAE(tiny()[0]).eval()


def features(batch: int = 2, seed: int = 3) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(
        prompt_embeds=torch.randn(batch, 5, TEXT_DIM, generator=gen),
        pooled_prompt_embeds=torch.randn(batch, TEXT_DIM, generator=gen),
        negative_prompt_embeds=torch.randn(1, 5, TEXT_DIM, generator=gen),
        negative_pooled_prompt_embeds=torch.randn(1, TEXT_DIM, generator=gen),
    )


# ------------------------------------------------------------------------------------ the schedule
def official_counts(num_steps: int, num_tokens: int) -> list[int]:
    """The official Scheduler._create_scheduler in NumPy float32 (round half to even, like torch)."""
    r = np.linspace(1, 0, num_steps, dtype=np.float32)
    share = (np.arccos(r) / np.float32(math.pi * 0.5)).astype(np.float32)
    counts = np.round(share / share.sum(dtype=np.float32) * np.float32(num_tokens)).astype(np.int64)
    counts[counts == 0] = 1
    counts[-1] += num_tokens - counts.sum()
    return counts.tolist()


@pytest.mark.parametrize("num_steps, side", [(8, 21), (8, 27), (8, 36), (8, 48), (15, 64), (8, 16), (8, 5)])
def test_reveal_counts_follow_the_official_arccos_schedule(num_steps, side):
    counts = reveal_counts(num_steps, side * side)
    assert counts == official_counts(num_steps, side * side)
    assert sum(counts) == side * side and min(counts) >= 1
    assert counts[0] == 1  # arccos(1) = 0: the first step decides the single raised-from-zero position


def test_reveal_counts_worked_example_and_a_scale_too_small():
    assert reveal_counts(8, 21 * 21) == [1, 31, 44, 55, 65, 74, 82, 89]
    with pytest.raises(ValueError, match="do not fit a scale of 4 tokens"):
        reveal_counts(15, 4)


def test_step_plans_are_the_official_ones():
    assert step_plan("1024", 9) == step_plan("1024", 12) and step_plan("1024", 12).num_steps == 8
    assert step_plan("1024", 12).main_model_steps == 5
    assert (step_plan("1024", 13).num_steps, step_plan("1024", 13).main_model_steps) == (15, 0)
    assert (step_plan("head-only", 9).num_steps, step_plan("head-only", 13).main_model_steps) == (8, 0)


# ------------------------------------------------------------------- the loop against a transcription
def transcribed_masked_scale(model, hidden, context, scale_idx, batch, settings, cfg, plan, codebook, gen, mask_gen):
    """The official w_mask branch, statement by statement (float mask, per-row index assignment,
    ``h += embed * (mask - mask_0)``), over nextscale's modules."""
    rows, length = hidden.shape[:2]
    h = torch.zeros(batch, length, codebook.shape[1])
    tokens = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros(batch, length)
    if plan == "1024":
        step_thresh, si_thresh = 5, 13
        steps = 15 if scale_idx > 12 else 8
    else:
        step_thresh, si_thresh, steps = 10000, -1, 8
    span = model.schedule.scale_slice(scale_idx)
    rope = torch.cat([model.rope_rows(0, 1), model.rope_rows(span.start, span.stop)])

    def logit2emb(logits, t):
        logits = classifier_free_guidance(logits[:batch], logits[batch:], t) if rows != batch else logits
        probs = filter_logits(logits, settings.top_k, settings.top_p).softmax(-1)
        idx = torch.multinomial(probs.view(-1, probs.shape[-1]), 1, replacement=True, generator=gen).view(batch, -1)
        return idx, probs.gather(-1, idx[..., None])  # conf (B, l, 1)

    def update(mask, h, tokens, conf, t_maskratio, idx):
        _, indices = torch.topk(conf.view(batch, -1), k=t_maskratio, dim=-1)
        mask_0 = mask.clone()
        for i, ind in enumerate(indices):
            mask[i, ind] = 1
        h = h + codebook[idx] * (mask[..., None] - mask_0[..., None])
        return h, torch.where((mask - mask_0).bool(), idx, tokens)

    for step, t_maskratio in enumerate(official_counts(steps, length)):
        torch.rand((rows, length), generator=mask_gen)  # Scheduler.get_mask's discarded draw
        if step < step_thresh and scale_idx < si_thresh:
            idx, conf = logit2emb(model.head_logits(hidden), settings.cfg_weight)
            h, tokens = update(mask, h, tokens, conf, t_maskratio, idx)
        else:
            levels = model.level_ids[0, span]  # lvl_1L[:, cur_L - pn * pn : cur_L]
            logits = model.sampler_head(context.sampler_start, hidden, h * mask[..., None], levels, rope)
            idx, conf = logit2emb(logits, cfg)
        conf = torch.rand(conf.shape, generator=mask_gen) if step < 5 else conf
        conf = conf * (1 - mask[..., None])
        h, tokens = update(mask, h, tokens, conf, t_maskratio, idx)
    assert bool(mask.all())
    return tokens, h


@pytest.mark.parametrize("plan, scale_idx, guided", [("1024", 2, True), ("head-only", 2, True), ("1024", 2, False)])
def test_one_scale_equals_the_transcribed_official_branch(model, tokenizer, plan, scale_idx, guided):
    batch = 3
    feats = features(batch)
    condition = TextCondition(
        feats["prompt_embeds"], torch.ones(batch, 5, dtype=torch.long), feats["pooled_prompt_embeds"]
    )
    negative = TextCondition(
        feats["negative_prompt_embeds"], torch.ones(1, 5, dtype=torch.long), feats["negative_pooled_prompt_embeds"]
    )
    condition = TextCondition(condition.hidden, condition.mask, condition.pooled, negative)
    rows = condition.with_unconditional() if guided else condition
    context = model.condition_context(rows)
    length = model.schedule.token_counts[scale_idx]
    hidden = torch.randn(len(rows), length, model.config.embed_dim, generator=torch.Generator().manual_seed(5))
    settings = SamplingConfig(cfg=3.0 if guided else 0.0, top_k=40, top_p=0.95).settings(scale_idx, 3)
    codebook = tokenizer.quantizer.codebook.weight.detach()
    with torch.no_grad():
        ours = sample_masked_scale(
            model, hidden, context, scale_idx, batch, settings, 5.0, plan, codebook,
            torch.Generator().manual_seed(7), torch.Generator().manual_seed(8),
        )  # fmt: skip
        theirs = transcribed_masked_scale(
            model, hidden, context, scale_idx, batch, settings, 5.0, plan, codebook,
            torch.Generator().manual_seed(7), torch.Generator().manual_seed(8),
        )  # fmt: skip
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])
    assert torch.equal(ours[1], codebook[ours[0]])  # every position decided, with its token's code


# ------------------------------------------------------------------------------- whole calls
def test_scales_before_the_masked_ones_are_drawn_as_without_it(model, tokenizer):
    pipe = TextPipeline(tokenizer, model)
    plain = pipe(seed=4, cfg=2.0, top_k=20, output_type="pt", **features())
    masked = pipe(seed=4, cfg=2.0, top_k=20, masked_sampling=True, output_type="pt", **features())
    again = pipe(seed=4, cfg=2.0, top_k=20, masked_sampling=True, output_type="pt", **features())
    start = model.schedule.scale_slice(model.config.sampler_from_scale).start
    assert torch.equal(plain.tokens[:, :start], masked.tokens[:, :start])
    assert not torch.equal(plain.tokens[:, start:], masked.tokens[:, start:])
    assert torch.equal(masked.tokens, again.tokens) and torch.equal(masked.images, again.images)
    assert torch.equal(masked.images, pipe.decode_tokens(masked.tokens))  # the image is its tokens'


def test_the_head_changes_nothing_unless_masked_sampling_is_on(plain, model, tokenizer):
    without = TextPipeline(tokenizer, plain)(seed=4, cfg=2.0, top_k=20, output_type="pt", **features())
    with_head = TextPipeline(tokenizer, model)(seed=4, cfg=2.0, top_k=20, output_type="pt", **features())
    assert torch.equal(without.tokens, with_head.tokens)


def test_masked_sampling_is_refused_where_it_cannot_run(plain, tokenizer):
    with pytest.raises(ValueError, match="masked-sampler head"):
        TextPipeline(tokenizer, plain)(seed=0, masked_sampling=True, **features())
    torch.manual_seed(0)
    class_pipe = Pipeline(tokenizer, ScaleTransformer(tiny()[1]))
    with pytest.raises(ValueError, match="masked-sampler head"):
        class_pipe(class_labels=[1], seed=0, masked_sampling=True)
    with pytest.raises(TypeError, match="masked_sampling must be True or False"):
        class_pipe(class_labels=[1], seed=0, masked_sampling="yes")
    with pytest.raises(ValueError, match="masked_plan must be one of"):
        SamplingConfig(masked_sampling=True, masked_plan="old")
    with pytest.raises(ValueError, match="sampler_from_scale must be in 1..2"):
        dataclasses.replace(plain.config, sampler_head=True, sampler_from_scale=3)


# ------------------------------------------------------------------------------- official files
def test_sampler_checkpoint_keys_and_shapes_match_the_release():
    releases = json.loads(require(REFERENCE / "star_state_dict_keys.json").read_text())
    release = releases[SAMPLER_RELEASE]
    state = {key: torch.empty(shape, device="meta") for key, shape in release["keys"].items()}
    config = infer_official_star_config(state)
    assert (config.sampler_head, config.sampler_depth, config.sampler_from_scale) == (True, 3, 9)
    assert config.scale_sides[-1] == 64 and config.depth == 30
    with torch.device("meta"):
        ours = TextScaleTransformer(config).state_dict()
    expected = {
        key: tuple(shape)
        for key, shape in release["keys"].items()
        if not key.endswith("zero_k_bias") and key != "class_emb.weight"
    }
    assert {ours_key_to_official(key): tuple(value.shape) for key, value in ours.items()} == expected
    assert [ours_key_to_official(official_key_to_ours(key)) for key in expected] == list(expected)
    buffers = 1001 * 1920 + (2 * 30 + 3) * 1920  # class_emb and the zero k-bias buffers
    assert sum(value.numel() for value in ours.values()) + buffers == release["num_params_incl_buffers"]


def test_a_sampler_checkpoint_loads_with_its_head(model):
    official = {ours_key_to_official(key): value.clone() for key, value in model.state_dict().items()}
    official["class_emb.weight"] = torch.zeros(1001, model.config.embed_dim)
    for i in range(model.config.depth):
        official[f"blocks.{i}.attn.zero_k_bias"] = torch.zeros(model.config.embed_dim)
        official[f"blocks.{i}.cross_attn.zero_k_bias"] = torch.zeros(model.config.embed_dim)
    for i in range(model.config.sampler_depth):
        official[f"feat_extract_blocks.{i}.attn.zero_k_bias"] = torch.zeros(model.config.embed_dim)
    loaded = load_official_star(
        {"trainer": {"var_wo_ddp": official, "config": {"patch_nums": [1, 2, 4]}}}, sampler_from_scale=2
    )
    assert loaded.config.sampler_head and loaded.config.sampler_depth == model.config.sampler_depth
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    official["feat_extract_blocks.0.attn.zero_k_bias"] = torch.ones(model.config.embed_dim)
    with pytest.raises(ValueError, match="zero vector"):
        load_official_star(
            {"trainer": {"var_wo_ddp": official, "config": {"patch_nums": [1, 2, 4]}}}, sampler_from_scale=2
        )


def test_resolution_transfer_grows_the_heads_level_table_too(model):
    grown = transfer_to_schedule(model, (1, 2, 4, 8))
    old, new = model.sampler_head.level_embed.weight, grown.sampler_head.level_embed.weight
    assert new.shape[0] == 4 and torch.equal(new[:3], old)
    assert torch.equal(grown.sampler_head.head.weight, model.sampler_head.head.weight)


# ------------------------------------------------------------------------------------------- CLI
def test_cli_takes_the_recommendation_and_can_switch_it_off(model, tokenizer, tmp_path, capsys):
    folder = tmp_path / "sampler-star"
    TextPipeline(tokenizer, model).recommend(cfg=2.0, top_k=20, masked_sampling=True).save_pretrained(folder)
    feats = tmp_path / "features.safetensors"
    save_file({name: value.contiguous() for name, value in features(1).items()}, str(feats))
    pipe = TextPipeline.from_pretrained(folder)
    for flags, masked in (([], True), (["--no-masked-sampling"], False)):
        out = tmp_path / f"tokens{len(flags)}.safetensors"
        main(
            [
                "sample",
                "--model",
                str(folder),
                "--text-features",
                str(feats),
                "--seed",
                "11",
                "--save-tokens",
                str(out),
                "--out",
                str(tmp_path / "grid.png"),
                *flags,
            ]
        )
        expected = pipe(seed=11, cfg=2.0, top_k=20, masked_sampling=masked, output_type="pt", **features(1)).tokens
        assert torch.equal(load_file(out)["tokens"], expected), flags
    capsys.readouterr()
    assert main(["info", str(folder)]) == 0
    assert "masked-sampler head from scale 2 (sample with --masked-sampling)" in capsys.readouterr().out


def test_the_cli_offers_the_plans_the_sampler_knows():
    from nextscale.cli.common import add_sampling_arguments
    from nextscale.sampling.guidance import MASKED_PLANS

    parser = __import__("argparse").ArgumentParser()
    add_sampling_arguments(parser)
    action = next(a for a in parser._actions if a.dest == "masked_plan")
    assert tuple(action.choices) == MASKED_PLANS


def test_an_edit_with_masked_sampling_shows_the_head_the_kept_tokens_from_its_first_step(model, tokenizer):
    from nextscale.sampling.editing import KeepTokensConstraint, box_mask, scale_keep_masks

    pipe = TextPipeline(tokenizer, model)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    image_tokens = tokenizer.encode(image)
    keep = ~box_mask(4, (0.25, 0.25, 0.75, 0.75))  # inpaint the centre of the last (4 x 4) scale
    constraint = KeepTokensConstraint(image_tokens, scale_keep_masks(keep, (1, 2, 4)), tokenizer.quantizer)
    seen = []
    forward = model.sampler_head.forward

    def recording(start, hidden, codes, levels, rope):
        seen.append(codes[0].clone())
        return forward(start, hidden, codes, levels, rope)

    model.sampler_head.forward = recording
    try:
        out = pipe(seed=0, masked_sampling=True, constraint=constraint, output_type="pt", **features(1))
    finally:
        del model.sampler_head.forward
    kept, image_codes = keep.reshape(-1), tokenizer.quantizer.lookup(image_tokens[-1])[0]
    last_scale = [codes for codes in seen if codes.shape[0] == 16]
    assert last_scale and all(torch.equal(codes[kept], image_codes[kept]) for codes in last_scale)
    assert torch.equal(out.tokens[0, -16:][kept], image_tokens[-1][0][kept])
    assert not torch.equal(out.tokens[0, -16:][~kept], image_tokens[-1][0][~kept])  # the centre was sampled
