"""The raster-scan baseline: causal teacher forcing, and cached inference that reproduces it."""

import pytest
import torch

from nextscale.transformer.conditioning import ClassCondition
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer, causal_bias


def tiny_model(seed: int = 0) -> RasterTransformer:
    torch.manual_seed(seed)
    config = RasterConfig.from_depth(2, embed_dim=32, num_heads=2, num_classes=3, vocab_size=11, side=3)
    model = RasterTransformer(config).eval()
    # Non-trivial gates, so every block changes the stream (the official init starts near the identity).
    model.init_weights(init_adaln_gamma=0.5)
    return model


def test_shape_rule_matches_var():
    config = RasterConfig.from_depth(16, side=16)
    assert (config.embed_dim, config.num_heads, config.drop_path_rate) == (1024, 16, pytest.approx(0.1 * 16 / 24))
    assert config.sequence_length == 256


def test_causal_bias_lets_each_query_see_itself_and_the_past():
    bias = causal_bias(2, 5)[0, 0]
    assert torch.isinf(bias).tolist() == [[False, False, False, False, True], [False] * 5]


def test_teacher_forced_logits_depend_only_on_earlier_tokens():
    model = tiny_model()
    labels = torch.tensor([0, 2])
    tokens = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, 4] = (changed[:, 4] + 1) % 11
    a, b = model(labels, tokens), model(labels, changed)
    assert a.shape == (2, 9, 11)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)  # position 4 predicts token 4: unaffected
    assert not torch.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("chunks", [(1,) * 9, (1, 4, 4), (1, 8)])
def test_cached_logits_equal_the_uncached_forward(chunks):
    model = tiny_model()
    labels = torch.tensor([1, 3])  # 3 is the null class
    tokens = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(2))
    full = model(labels, tokens)
    context = model.condition_context(ClassCondition(labels, model.config.null_class_id))
    cache = model.new_kv_cache(2)
    pieces, position = [], 0
    for count in chunks:
        previous = None if position == 0 else tokens[:, position - 1 : position - 1 + count]
        pieces.append(model.forward_cached(model.input_at(position, context, previous), context, cache))
        position += count
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_the_expected_shape():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"tokens must be \(B, 9\)"):
        model(torch.tensor([0]), torch.zeros(1, 8, dtype=torch.long))
    context = model.condition_context(ClassCondition(torch.tensor([0]), 3))
    with pytest.raises(ValueError, match="position 0 is the start token"):
        model.input_at(0, context, torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="needs previous tokens"):
        model.input_at(9, context, torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="shared-AdaLN"):
        RasterConfig.from_depth(2, shared_adaln=True)


def test_bad_tokens_and_labels_are_refused_in_one_line():
    # the embedding would raise deep inside (IndexError on a CPU, a device assert that ends the process on a GPU)
    model = tiny_model()
    labels = torch.tensor([0])
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.10 \(the vocabulary\), got values in \[0, 11\]"):
        model(labels, torch.tensor([[0] * 8 + [11]]))
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.10"):
        model(labels, torch.full((1, 9), -1))
    with pytest.raises(TypeError, match="tokens must be integer token ids, got a torch.float32 tensor"):
        model(labels, torch.zeros(1, 9))
    with pytest.raises(ValueError, match=r"class_labels must be a \(B,\) tensor, got \(\)"):
        model(torch.tensor(0), torch.zeros(1, 9, dtype=torch.long))


def test_a_text_condition_is_refused_by_its_type_name():
    from nextscale.transformer.conditioning import TextCondition

    text = TextCondition(torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 8))
    with pytest.raises(TypeError) as error:
        tiny_model().condition_context(text)
    assert str(error.value).endswith("pass a ClassCondition, not TextCondition")  # not the tensors' repr


def test_a_context_of_other_rows_than_the_cache_is_refused():
    # it broadcast into the AdaLN modulations: two cached rows both conditioned on the one label given
    model = tiny_model()
    one_row = model.condition_context(ClassCondition(torch.tensor([1]), 3))
    two_rows = model.condition_context(ClassCondition(torch.tensor([1, 2]), 3))
    with pytest.raises(ValueError, match="the context holds 1 condition rows but the KV cache 2"):
        model.forward_cached(model.input_at(0, two_rows, None), one_row, model.new_kv_cache(2))


def test_tokens_given_as_a_list_are_refused_by_type():
    with pytest.raises(TypeError, match=r"tokens must be a \(B, 9\) tensor of token ids, got a list"):
        tiny_model()(torch.tensor([0]), [[0] * 9])


@pytest.mark.parametrize("field", ["side", "vocab_size", "num_classes"])
def test_config_counts_must_be_integers(field):
    # a float side passed the range check and failed later inside torch.empty with a size-unpacking error
    with pytest.raises(TypeError, match=f"{field} must be an integer, got 3.5"):
        RasterConfig.from_depth(2, embed_dim=32, num_heads=2, **{field: 3.5})
