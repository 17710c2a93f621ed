"""MultiScaleVQVAE on the tiny preset: shapes, ranges, gradients, validation, save/load."""

import pytest
import torch

from nextscale import presets
from nextscale.pretrained import load_component, save_component
from nextscale.tokenizer import MultiScaleVQVAE, TokenizerConfig


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MultiScaleVQVAE(presets.tiny()[0]).eval()


def _images(config, batch=2):
    generator = torch.Generator().manual_seed(3)
    return torch.rand(batch, config.in_channels, config.image_size, config.image_size, generator=generator) * 2 - 1


def test_default_parameter_count_matches_release():
    with torch.device("meta"):
        model = MultiScaleVQVAE(TokenizerConfig())
    assert sum(p.numel() for p in model.parameters()) == 108_948_355
    assert sum(p.numel() for p in model.encoder.parameters()) == 44_107_872
    assert sum(p.numel() for p in model.decoder.parameters()) == 64_653_923


def test_encode_decode_shapes_and_range(model):
    config = model.config
    images = _images(config)
    indices = model.encode(images)
    assert [tuple(i.shape) for i in indices] == [(2, s * s) for s in config.scale_sides]
    assert all(int(i.min()) >= 0 and int(i.max()) < config.vocab_size for i in indices)
    with torch.no_grad():
        decoded = model.decode(indices)
        reconstructed = model.reconstruct(images)
    assert decoded.shape == images.shape
    assert decoded.min() >= -1 and decoded.max() <= 1
    torch.testing.assert_close(decoded, reconstructed, atol=1e-5, rtol=0)
    f = model.encode_features(images)
    assert f.shape == (2, config.code_dim, config.latent_side, config.latent_side)


def test_tokens_round_trip(model):
    indices = model.encode(_images(model.config))
    tokens = model.tokens_from_indices(indices)
    assert tokens.shape == (2, model.config.schedule.total_tokens)
    assert all(torch.equal(a, b) for a, b in zip(model.indices_from_tokens(tokens), indices))
    teacher = model.teacher_forcing_input(indices)
    assert teacher.shape == (2, model.config.schedule.total_tokens - 1, model.config.code_dim)


def test_decode_scales_ends_with_the_decode(model):
    indices = model.encode(_images(model.config))
    with torch.no_grad():
        views = model.decode_scales(indices)
        assert len(views) == len(model.config.scale_sides)
        assert torch.equal(views[-1], model.decode(indices))
        assert all(view.shape == views[-1].shape and view.abs().max() <= 1 for view in views)
        with pytest.raises(ValueError, match="must lie in"):
            model.decode_scales([indices[0] + model.config.vocab_size, *indices[1:]])


def test_training_forward_reaches_encoder(model):
    model.train()
    out = model(_images(model.config))
    assert out.reconstruction.shape == (2, 3, model.config.image_size, model.config.image_size)
    assert torch.isfinite(out.quant_loss)
    assert out.hits.shape == (len(model.config.scale_sides), model.config.vocab_size)
    (out.reconstruction.square().mean() + out.quant_loss).backward()
    for name in ("encoder.conv_in.weight", "quant_conv.weight", "quantizer.codebook.weight", "decoder.conv_out.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert int(model.quantizer.usage_updates) == len(model.config.scale_sides)


def test_input_validation(model):
    config = model.config
    size = config.image_size
    with pytest.raises(ValueError, match="3 channels"):
        model.encode(torch.zeros(1, 1, size, size))
    with pytest.raises(ValueError, match=rf"must be {size}x{size} .* got {2 * size}x{2 * size}.*resize or crop"):
        model.encode(torch.zeros(1, 3, 2 * size, 2 * size))
    with pytest.raises(ValueError, match="not a multiple of the downsampling factor"):
        model.encode(torch.zeros(1, 3, size - 2, size - 2))
    with pytest.raises(ValueError, match="4-D float tensor"):
        model.encode(torch.zeros(3, size, size))
    with pytest.raises(ValueError, match="4-D float tensor"):
        model.encode(torch.zeros(1, 3, size, size, dtype=torch.long))
    indices = model.encode(_images(config))
    indices[-1] = indices[-1].clone()
    indices[-1][0, 0] = config.vocab_size
    with pytest.raises(ValueError, match="must lie in"):
        model.decode(indices)


def test_release_size_message():
    config = TokenizerConfig(base_channels=32, channel_multipliers=(1, 1, 1, 1, 1), num_res_blocks=1)
    with torch.device("meta"):
        model = MultiScaleVQVAE(config)
    message = "images must be 256x256 for this tokenizer (latent side 16 x downsampling 16); got 250x250"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.encode_features(torch.zeros(1, 3, 250, 250, device="meta"))


def test_save_load_component_bit_exact(model, tmp_path):
    model.quantizer.update_usage(torch.rand(len(model.config.scale_sides), model.config.vocab_size))
    save_component(model, tmp_path / "tokenizer")
    loaded = load_component(MultiScaleVQVAE, tmp_path / "tokenizer")
    assert loaded.config == model.config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    images = _images(model.config)
    assert all(torch.equal(a, b) for a, b in zip(model.encode(images), loaded.encode(images)))
