"""Official STAR checkpoints through `nextscale convert --star` and the pipeline call / `nextscale sample`
with precomputed text features: the official tokens and generator state, and clear refusals."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from nextscale import Pipeline
from nextscale.cli import main
from nextscale.sampling.text_pipeline import TextPipeline
from reference_fixtures import STAR_PARITY, VAR_PARITY, require


@pytest.fixture(scope="module")
def fixture():
    return torch.load(require(STAR_PARITY / "star_parity_d2.pt"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "star-d2"
    args = ["convert", "--vae", str(require(VAR_PARITY / "vqvae.pth")), "--star", str(STAR_PARITY / "star_d2.pth")]
    assert main([*args, "--out", str(out)]) == 0
    return out


def official_features(fixture) -> dict:
    return {
        "prompt_embeds": fixture["text_hidden"][:2],
        "prompt_attention_mask": fixture["text_mask"][:2],
        "pooled_prompt_embeds": fixture["text_pool"][:2],
        "negative_prompt_embeds": fixture["null_hidden"],
        "negative_prompt_attention_mask": fixture["null_mask"],
        "negative_pooled_prompt_embeds": fixture["null_pool"],
    }


def test_pipeline_call_reproduces_the_official_sampling_run(converted, fixture):
    pipe = Pipeline.from_pretrained(converted)
    assert isinstance(pipe, TextPipeline) and pipe.text_encoder is None
    assert pipe.transformer.config.official_batch0_cross_attention
    assert pipe.recommended_sampling == {"cfg": 4.5, "top_k": 600, "top_p": 0.8}  # the official sample.py settings
    generator = torch.Generator().manual_seed(42)
    out = pipe(cfg=4.0, top_k=900, top_p=0.95, generator=generator, output_type="pt", **official_features(fixture))
    assert torch.equal(out.tokens, fixture["sample_idx_all"])
    assert torch.equal(generator.get_state(), fixture["sample_rng_state_after"])
    assert (out.images - fixture["sample_img"]).abs().max() <= 1e-4


def test_cli_sample_with_text_features_reproduces_the_official_tokens(converted, fixture, tmp_path):
    features = tmp_path / "features.safetensors"
    save_file({key: value.contiguous() for key, value in official_features(fixture).items()}, str(features))
    tokens, folder = tmp_path / "tokens.safetensors", tmp_path / "each"
    code = main(
        ["sample", "--model", str(converted), "--text-features", str(features), "--seed", "42", "--cfg", "4"]
        + ["--top-k", "900", "--top-p", "0.95", "--out", str(tmp_path / "grid.png"), "--save-tokens", str(tokens)]
        + ["--out-dir", str(folder)]
    )
    assert code == 0
    assert torch.equal(load_file(tokens)["tokens"], fixture["sample_idx_all"])
    assert sorted(p.name for p in folder.glob("*.png")) == ["0000.png", "0001.png"]
    assert (folder / "prompts.txt").read_text() == f"(row 0 of {features})\n(row 1 of {features})\n"


def test_per_sample_switch_gives_the_fixed_logits(tmp_path, fixture):
    out = tmp_path / "fixed"
    args = ["convert", "--vae", str(require(VAR_PARITY / "vqvae.pth")), "--star", str(STAR_PARITY / "star_d2.pth")]
    assert main([*args, "--out", str(out), "--per-sample-cross-attention"]) == 0
    pipe = Pipeline.from_pretrained(out)
    assert not pipe.transformer.config.official_batch0_cross_attention
    from nextscale.transformer.conditioning import TextCondition

    condition = TextCondition(fixture["text_hidden"], fixture["text_mask"], fixture["text_pool"])
    with torch.no_grad():
        logits = pipe.transformer(condition, fixture["x_BLCv_wo_first_l"])
    assert (logits.logsumexp(-1) - fixture["tf_fixed_logits_lse"]).abs().max() <= 1e-4


def test_refusals_are_one_line_errors(converted, fixture, tmp_path, capsys):
    var_file = require(VAR_PARITY / "var_d2.pth")
    assert main(["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--star", str(var_file), "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert "not an official STAR transformer checkpoint" in err and "(use --var for it)" in err
    # a prompt string to a folder without a text encoder names the fix
    assert main(["sample", "--model", str(converted), "--prompt", "a red apple", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "no text encoder" in err and "--text-encoder" in err and err.count("\n") == 1
    # class labels to a text pipeline
    assert main(["sample", "--model", str(converted), "--class", "1", "--out", str(tmp_path / "g.png")]) == 2
    assert "text-conditional" in capsys.readouterr().err
    pipe = Pipeline.from_pretrained(converted)
    with pytest.raises(ValueError, match="text-conditional"):
        pipe(class_labels=[1])
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        features = official_features(fixture)
        for key in [k for k in features if k.startswith("negative")]:
            features.pop(key)
        pipe(cfg=4.0, **features)
    # a missing text encoder folder
    args = ["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--star", str(STAR_PARITY / "star_d2.pth")]
    assert main([*args, "--out", str(tmp_path / "o"), "--text-encoder", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_sampler_checkpoint_converts_and_samples_masked(fixture, tmp_path):
    """The d2 fixture plus a masked-sampler head in the official names (shapes as in star-1024-sampler) through
    `convert`: the folder recommends the demo's settings with masked sampling, and a masked call on the released
    256-px schedule (scale 9, the 16 x 16 map, from the head) keeps the official tokens of scales 0-8."""
    state = dict(
        torch.load(STAR_PARITY / "star_d2.pth", map_location="cpu", weights_only=True)["trainer"]["var_wo_ddp"]
    )
    width, gen = state["pos_start"].shape[-1], torch.Generator().manual_seed(0)
    head = {"pos_start_last": (1, 1, width), "word_embed_head.weight": (width, 32), "word_embed_head.bias": (width,)}
    head |= {"lvl_embed_2.weight": (10, width), "encoder_proj2.weight": (width, 384), "encoder_proj2.bias": (width,)}
    head |= {"head_proj.weight": (width, 2 * width), "head_proj.bias": (width,), "head_logits2.weight": (4096, width)}
    head |= {"head_logits2.bias": (4096,)}
    for i in range(3):
        block = {f"feat_extract_blocks.{i}.{key[len('blocks.0.') :]}": value for key, value in state.items()}
        head |= {key: tuple(value.shape) for key, value in block.items() if ".attn." in key or ".ffn." in key}
        head = {key: shape for key, shape in head.items() if "cross_attn" not in key}
    for key, shape in head.items():
        state[key] = torch.zeros(shape) if key.endswith("zero_k_bias") else torch.randn(shape, generator=gen) * 0.02
    checkpoint = tmp_path / "star-sampler.pth"
    torch.save({"trainer": {"var_wo_ddp": state}}, checkpoint)
    out = tmp_path / "star-sampler"
    assert main(["convert", "--vae", str(VAR_PARITY / "vqvae.pth"), "--star", str(checkpoint), "--out", str(out)]) == 0
    pipe = Pipeline.from_pretrained(out)
    assert pipe.transformer.config.sampler_head and pipe.transformer.config.sampler_from_scale == 9
    assert pipe.recommended_sampling == {"cfg": 4.0, "top_k": 600, "top_p": 0.8, "masked_sampling": True}
    settings = dict(cfg=4.0, top_k=900, top_p=0.95, output_type="pt", **official_features(fixture))
    masked = pipe(generator=torch.Generator().manual_seed(42), masked_sampling=True, **settings)
    start = pipe.transformer.schedule.scale_slice(9).start
    assert torch.equal(masked.tokens[:, :start], fixture["sample_idx_all"][:, :start])
    assert not torch.equal(masked.tokens[:, start:], fixture["sample_idx_all"][:, start:])
    plain = pipe(generator=torch.Generator().manual_seed(42), **settings)
    assert torch.equal(plain.tokens, fixture["sample_idx_all"])  # the head is inert without masked sampling
