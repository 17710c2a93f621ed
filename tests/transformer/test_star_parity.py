"""Parity with the official STAR code (fixtures in shared/reference/star_parity, made by the official repo):
RoPE tables, teacher-forced logits and losses in both cross-attention modes, intermediates, and sampling."""

import json

import pytest
import torch
import torch.nn.functional as F

from nextscale.layers.rope import apply_rope, normalized_coordinates, normalized_rope_table, rope_frequencies
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.scales import SIDES_256
from nextscale.tokenizer.official import load_official_vqvae
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.text_model import TextScaleTransformer
from nextscale.transformer.text_official import (
    infer_official_star_config,
    load_official_star,
    official_key_to_ours,
    ours_key_to_official,
    read_official_star,
)
from reference_fixtures import REFERENCE, STAR_PARITY, VAR_PARITY, require


@pytest.fixture(scope="module")
def fixture():
    return torch.load(require(STAR_PARITY / "star_parity_d2.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def models():
    path = require(STAR_PARITY / "star_d2.pth")
    return {"quirk": load_official_star(path), "fixed": load_official_star(path, batch0_cross_attention=False)}


def close(ours: torch.Tensor, theirs: torch.Tensor, atol: float = 1e-4) -> None:
    diff = (ours.double() - theirs.double()).abs().max().item()
    assert diff <= atol, f"max |diff| {diff:.3g} > {atol}"


def prompts(fixture, rows=slice(None)) -> TextCondition:
    null = TextCondition(fixture["null_hidden"], fixture["null_mask"], fixture["null_pool"])
    return TextCondition(fixture["text_hidden"][rows], fixture["text_mask"][rows], fixture["text_pool"][rows], null)


def official_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    B, L, V = logits.shape
    per_token = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(B, L)
    return per_token.mul(1.0 / L).sum(dim=-1).mean()


def test_rope_matches_the_official_tables(fixture):
    x, y = normalized_coordinates(SIDES_256, 64)
    assert torch.equal(x, fixture["rope_t_x"]) and torch.equal(y, fixture["rope_t_y"])
    close(rope_frequencies(64, 10000.0), fixture["rope_base_freqs"], 1e-7)
    table = normalized_rope_table(SIDES_256, 64, 10000.0, 64)
    close(torch.view_as_real(table), fixture["rope_freqs_cis"], 1e-6)
    close(apply_rope(fixture["rope_q_in"], table), fixture["rope_q_out"], 1e-6)
    close(apply_rope(fixture["rope_k_in"], table), fixture["rope_k_out"], 1e-6)


def test_inferred_config(models):
    config = models["quirk"].config
    assert (config.depth, config.embed_dim, config.num_heads, config.text_dim) == (2, 128, 2, 384)
    assert (config.vocab_size, config.code_dim, config.scale_sides) == (4096, 32, SIDES_256)
    assert (config.rope_theta, config.rope_norm, config.logit_norm) == (10000.0, 64.0, True)
    assert config.official_batch0_cross_attention and not models["fixed"].config.official_batch0_cross_attention
    assert config.drop_path_rate == pytest.approx(0.1 * 2 / 24)


@pytest.mark.parametrize("mode", ["quirk", "fixed"])
def test_teacher_forced_logits_and_loss_match_official(models, fixture, mode):
    model, prefix = models[mode], f"tf_{mode}"
    with torch.no_grad():
        logits = model(prompts(fixture), fixture["x_BLCv_wo_first_l"])
    assert logits.shape == (3, 680, 4096) and logits.dtype == torch.float32
    close(logits[:, fixture["logits_positions"]], fixture[f"{prefix}_logits_sub"])
    for stat in ("lse", "max", "mean", "std"):
        ours = {"lse": logits.logsumexp(-1), "max": logits.amax(-1), "mean": logits.mean(-1), "std": logits.std(-1)}
        close(ours[stat], fixture[f"{prefix}_logits_{stat}"])
    assert torch.equal(logits.argmax(-1), fixture[f"{prefix}_logits_argmax"])
    per_token = F.cross_entropy(logits.transpose(1, 2), fixture["idx_all"], reduction="none")
    close(per_token, fixture[f"{prefix}_ce_per_token"])
    close(official_loss(logits, fixture["idx_all"]), fixture[f"{prefix}_loss"], 1e-5)


@pytest.mark.parametrize("mode", ["quirk", "fixed"])
def test_intermediate_activations_match_official(models, fixture, mode):
    model, prefix = models[mode], f"tf_{mode}"
    positions = fixture["logits_positions"]
    captured = {}
    hooks = [
        model.blocks[0].register_forward_pre_hook(lambda m, args: captured.__setitem__("embed", args[0])),
    ]
    for i, block in enumerate(model.blocks):
        hooks.append(block.attn.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"self{i}", out)))
        hooks.append(
            block.cross_attn.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"cross{i}", out))
        )
        hooks.append(block.register_forward_hook(lambda m, a, out, i=i: captured.__setitem__(f"block{i}", out)))
    with torch.no_grad():
        model(prompts(fixture), fixture["x_BLCv_wo_first_l"])
    for hook in hooks:
        hook.remove()
    close(captured["embed"][:, positions], fixture[f"{prefix}_h_embed_sub"], 1e-5)
    for i in range(2):
        close(captured[f"self{i}"][:, positions], fixture[f"{prefix}_h_selfattn{i}_sub"], 1e-5)
        close(captured[f"cross{i}"][:, positions], fixture[f"{prefix}_h_crossattn{i}_sub"], 1e-5)
        close(captured[f"block{i}"][:, positions], fixture[f"{prefix}_h_block{i}_sub"], 1e-4)


@pytest.mark.parametrize("mode", ["quirk", "fixed"])
def test_gradients_match_official(fixture, mode):
    model = load_official_star(require(STAR_PARITY / "star_d2.pth"), batch0_cross_attention=mode == "quirk")
    logits = model(prompts(fixture), fixture["x_BLCv_wo_first_l"])
    official_loss(logits, fixture["idx_all"]).backward()
    prefix = f"tf_{mode}"
    block0 = model.blocks[0].cross_attn
    close(block0.proj.weight.grad, fixture[f"{prefix}_grad_cross_proj_w_b0"], 1e-5)
    close(block0.kv.weight.grad, fixture[f"{prefix}_grad_cross_kv_w_b0"], 1e-5)
    # gradient norms in the official named_parameters() order (class_emb, unused by STAR, has norm 0)
    meta = json.loads(require(STAR_PARITY / "star_parity_meta.json").read_text())
    params = dict(model.named_parameters())
    norms = []
    for name in meta["named_parameters_order"]:
        if name == "class_emb.weight":
            norms.append(0.0)
        else:
            norms.append(params[official_key_to_ours(name)].grad.norm().item())
    expected = fixture[f"{prefix}_grad_param_norms"]
    assert torch.allclose(torch.tensor(norms), expected, rtol=1e-4, atol=1e-7)


def test_each_sample_alone_equals_the_per_sample_batch(models, fixture):
    with torch.no_grad():
        for row in range(3):
            alone = models["quirk"](prompts(fixture, slice(row, row + 1)), fixture["x_BLCv_wo_first_l"][row : row + 1])
            close(alone.logsumexp(-1)[0], fixture["tf_b1_logits_lse"][row])
            assert torch.equal(alone.argmax(-1)[0], fixture["tf_b1_logits_argmax"][row])


@pytest.fixture(scope="module")
def official_sampling(models, fixture):
    tokenizer = load_official_vqvae(require(VAR_PARITY / "vqvae.pth"), SIDES_256)
    sampler = ScaleSampler(tokenizer, models["quirk"])
    generator = torch.Generator().manual_seed(42)
    config = SamplingConfig(cfg=4.0, top_k=900, top_p=0.95)
    result = sampler.sample(prompts(fixture, slice(0, 2)), config=config, generator=generator)
    return sampler, result, generator


def test_sampling_gives_the_official_tokens_and_generator_state(official_sampling, fixture):
    _, result, generator = official_sampling
    assert torch.equal(result.tokens, fixture["sample_idx_all"])
    assert torch.equal(generator.get_state(), fixture["sample_rng_state_after"])


def test_sampled_image_matches_official(official_sampling, fixture):
    sampler, result, _ = official_sampling
    close(result.f_hat, fixture["sample_fhat_scales"][-1], 1e-5)
    close(sampler.decode(result.f_hat), fixture["sample_img"], 1e-4)


def test_smooth_sampling_follows_the_official_star_path(official_sampling, models, fixture):
    """STAR's more_smooth (STAR_REFERENCE §7): per scale one exponential_ of shape (B, l, V) and nothing else (no
    multinomial), on the unfiltered guided logits (top-k / top-p unused); unlike VAR's smooth mode."""
    sampler, _, _ = official_sampling
    condition = prompts(fixture, slice(0, 2))
    runs = {}
    for filters in ((900, 0.95), (None, None)):
        generator = torch.Generator().manual_seed(42)
        config = SamplingConfig(cfg=4.0, top_k=filters[0], top_p=filters[1], smooth=True)
        runs[filters] = (sampler.sample(condition, config=config, generator=generator), generator)
    (filtered, generator), (unfiltered, _) = runs[(900, 0.95)], runs[(None, None)]
    assert torch.equal(filtered.tokens, unfiltered.tokens) and torch.equal(filtered.f_hat, unfiltered.f_hat)
    official = torch.Generator().manual_seed(42)
    noise = [torch.empty(2, side * side, 4096).exponential_(generator=official) for side in SIDES_256]
    assert torch.equal(generator.get_state(), official.get_state())
    # scale 0 has no guidance (ratio 0): its token is the argmax of the conditional logits plus the Gumbel noise
    with torch.no_grad():
        first = models["quirk"](condition, fixture["x_BLCv_wo_first_l"][:2])[:, 0]  # (2, V)
    assert torch.equal(filtered.tokens[:, 0], (first - noise[0][:, 0].log()).argmax(-1))


def test_key_mapping_is_a_bijection_on_the_released_keys():
    releases = json.loads(require(REFERENCE / "star_state_dict_keys.json").read_text())
    for name in ("d2_256_in384", "d16_256", "d30_256", "d30_1024"):
        keys = releases[name]["keys"]
        params = [k for k in keys if not k.endswith("zero_k_bias") and k != "class_emb.weight"]
        ours = [official_key_to_ours(k) for k in params]
        assert len(set(ours)) == len(params)
        assert [ours_key_to_official(k) for k in ours] == params


def test_released_d16_shape_builds_with_the_official_parameter_count():
    releases = json.loads(require(REFERENCE / "star_state_dict_keys.json").read_text())
    release = releases["d16_256"]
    state = {key: torch.empty(shape, device="meta") for key, shape in release["keys"].items()}
    config = infer_official_star_config(state)
    assert (config.depth, config.embed_dim, config.num_heads, config.text_dim) == (16, 1024, 16, 1024)
    with torch.device("meta"):
        model = TextScaleTransformer(config)
    ours = sum(p.numel() for p in model.parameters())
    unused = 1001 * 1024 + 2 * 16 * 1024  # class_emb and the zero k-bias buffers
    assert ours + unused == release["num_params_incl_buffers"]


def test_non_star_files_are_refused_with_a_clear_error(tmp_path):
    var_file = require(VAR_PARITY / "var_d2.pth")
    with pytest.raises(ValueError, match="use --var"):
        read_official_star(var_file)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"is not a PyTorch checkpoint \(corrupt, truncated, or another kind"):
        read_official_star(junk)
    head_only = {"pos_start_last": torch.zeros(1)}  # a sampler head without its model
    with pytest.raises(ValueError, match="not an official STAR transformer checkpoint: missing"):
        read_official_star(head_only)


@pytest.mark.parametrize("key", ["lvl_embed.weight", "word_embed.weight", "blocks.0.ffn.fc1.weight"])
def test_a_truncated_star_state_dict_names_the_missing_entry(key):
    """Entries the model shape is read from were once looked up unchecked: a KeyError and a traceback."""
    state = torch.load(require(STAR_PARITY / "star_d2.pth"), map_location="cpu", weights_only=True)
    state = {name: value for name, value in state["trainer"]["var_wo_ddp"].items() if name != key}
    with pytest.raises(ValueError, match=rf"not an official STAR transformer checkpoint: missing \['{key}'\]"):
        load_official_star(state)
    with pytest.raises(ValueError, match="missing"):  # what `nextscale info` calls
        infer_official_star_config(state)
