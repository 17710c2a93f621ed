import pytest
import torch

from nextscale.scales import SIDES_256, ScaleSchedule


def test_counts_and_offsets_of_the_256px_schedule():
    schedule = ScaleSchedule(SIDES_256)
    assert schedule.total_tokens == 680
    assert schedule.offsets[9] == 424
    assert schedule.scale_slice(2) == slice(5, 14)


def test_level_ids_follow_scales():
    levels = ScaleSchedule((1, 2, 3)).level_ids()
    assert levels.tolist() == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2]


def test_block_causal_mask_forbids_later_scales_and_allows_own_and_earlier():
    schedule = ScaleSchedule((1, 2, 4))
    mask = schedule.block_causal_mask()
    levels = schedule.level_ids()
    for q in range(schedule.total_tokens):
        for k in range(schedule.total_tokens):
            assert bool(mask[q, k]) == bool(levels[k] <= levels[q])
    bias = schedule.attention_bias()
    assert bias.shape == (1, 1, 21, 21)
    assert torch.isinf(bias[0, 0, 0, 1:]).all() and bias[0, 0, 20].eq(0).all()


@pytest.mark.parametrize("sides", [(), (1, 3, 3), (1, 4, 2), (0, 1, 2), (-1, 2)])
def test_bad_schedules_are_refused(sides):
    with pytest.raises(ValueError):
        ScaleSchedule(sides)


@pytest.mark.parametrize("sides", [(1, 2.5, 4), ("1", "2"), (True, 2)])
def test_sides_that_are_not_whole_numbers_are_refused_not_truncated(sides):
    # int() used to turn (1, 2.5, 4) into (1, 2, 4): a model built that way saved a config.json it could not load.
    with pytest.raises(ValueError, match="whole numbers"):
        ScaleSchedule(sides)
    assert ScaleSchedule((1, 2.0, 4)).sides == (1, 2, 4)  # integral floats (and NumPy ints) are fine


def test_only_transformers_need_a_1x1_first_scale():
    from nextscale.transformer.config import TransformerConfig

    assert ScaleSchedule((8,)).total_tokens == 64  # a one-map tokenizer schedule (the raster baseline)
    with pytest.raises(ValueError, match="1x1"):
        ScaleSchedule((2, 4)).require_start_scale()
    with pytest.raises(ValueError, match="1x1"):
        TransformerConfig.from_depth(2, scale_sides=(2, 4))


def test_split_and_concat_round_trip():
    schedule = ScaleSchedule((1, 2, 4))
    tokens = torch.arange(2 * 21).view(2, 21)
    parts = schedule.split(tokens)
    assert [p.shape[1] for p in parts] == [1, 4, 16]
    assert torch.equal(schedule.concat(parts), tokens)
    with pytest.raises(ValueError):
        schedule.concat(parts[:2])


def test_every_config_keeps_scale_sides_as_a_tuple_of_ints():
    """A list (a caller's own parsing) made a frozen config unhashable and unequal to its reloaded copy."""
    import dataclasses

    from nextscale.presets import star_tiny, tiny

    for config in (*tiny(), star_tiny()[1]):
        listed = dataclasses.replace(config, scale_sides=list(config.scale_sides))
        assert listed.scale_sides == tuple(config.scale_sides) and listed == config
        assert hash(listed) == hash(config)


def test_scale_slice_counts_negative_indices_from_the_last_scale():
    schedule = ScaleSchedule((1, 2, 4))
    assert schedule.scale_slice(-1) == schedule.scale_slice(2) == slice(5, 21)
    assert schedule.scale_slice(-3) == slice(0, 1)
    with pytest.raises(IndexError):
        schedule.scale_slice(3)
