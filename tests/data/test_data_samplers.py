import pytest

from nextscale.data.samplers import ResumableDistributedSampler


def _epoch(sampler):
    return [batch for batch in sampler]


def test_one_rank_equals_two_ranks_combined():
    single = _epoch(ResumableDistributedSampler(23, batch_size=4, seed=5))
    rank0 = _epoch(ResumableDistributedSampler(23, batch_size=2, rank=0, world_size=2, seed=5))
    rank1 = _epoch(ResumableDistributedSampler(23, batch_size=2, rank=1, world_size=2, seed=5))
    assert len(single) == len(rank0) == len(rank1) == 5
    for step, batch in enumerate(single):
        assert rank0[step] == batch[0::2] and rank1[step] == batch[1::2]
        assert sorted(rank0[step] + rank1[step]) == sorted(batch)


def test_epoch_covers_each_sample_once_and_reshuffles():
    sampler = ResumableDistributedSampler(12, batch_size=3, seed=0)
    first, second = _epoch(sampler), _epoch(sampler)
    assert sorted(i for b in first for i in b) == list(range(12))
    assert sorted(i for b in second for i in b) == list(range(12))
    assert first != second
    assert sampler.state_dict()["epoch"] == 2


def test_resume_continues_at_same_position():
    reference = ResumableDistributedSampler(30, batch_size=4, seed=1)
    stream = _epoch(reference) + _epoch(reference)
    interrupted = ResumableDistributedSampler(30, batch_size=4, seed=1)
    iterator = iter(interrupted)
    seen = [next(iterator) for _ in range(5)]
    state = interrupted.state_dict()
    resumed = ResumableDistributedSampler(30, batch_size=4, seed=1)
    resumed.load_state_dict(state)
    assert seen + _epoch(resumed) + _epoch(resumed) == stream


def test_resume_on_other_world_size_with_same_global_batch():
    single = ResumableDistributedSampler(40, batch_size=4, seed=2)
    state = single.state_for_step(13)  # epoch 1, step 3
    assert (state["epoch"], state["step"]) == (1, 3)
    expected = single.global_batch(1, 3)
    halves = []
    for rank in range(2):
        sampler = ResumableDistributedSampler(40, batch_size=2, rank=rank, world_size=2, seed=2)
        sampler.load_state_dict(state)
        halves.append(next(iter(sampler)))
    assert halves == [expected[0::2], expected[1::2]]


def test_mismatched_state_is_refused():
    state = ResumableDistributedSampler(40, batch_size=4, seed=2).state_dict()
    with pytest.raises(ValueError, match="seed"):
        ResumableDistributedSampler(40, batch_size=4, seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="global_batch_size"):
        ResumableDistributedSampler(40, batch_size=8, seed=2).load_state_dict(state)


def test_keep_last_wraps_to_full_batches():
    sampler = ResumableDistributedSampler(10, batch_size=2, rank=1, world_size=2, shuffle=False, drop_last=False)
    assert _epoch(sampler) == [[1, 3], [5, 7], [9, 1]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        ResumableDistributedSampler(10, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableDistributedSampler(3, 4)
    with pytest.raises(ValueError, match="seed must be 0 or more"):  # not numpy's error at the first batch
        ResumableDistributedSampler(10, 2, seed=-1)
