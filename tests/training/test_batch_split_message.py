"""A batch that does not split over the processes and micro-steps names the flags and the nearest sizes that do
(a 2-process run resumed on 3 processes meets it with its recorded --batch-size)."""

import pytest

from nextscale.training.batches import micro_batch_size
from nextscale.training.config import TrainConfig


def test_an_uneven_batch_names_the_flags_and_the_nearest_even_sizes():
    config = TrainConfig(total_steps=1, batch_size=16, grad_accum=1)
    with pytest.raises(
        ValueError, match=r"--batch-size 16 does not split evenly over 3 process\(es\) x --grad-accum 1"
    ) as err:
        micro_batch_size(config, world_size=3, train_size=100, eval_size=None)
    assert "(15 or 18)" in str(err.value)


def test_an_even_batch_gives_each_process_its_share_of_a_micro_step():
    config = TrainConfig(total_steps=1, batch_size=12, grad_accum=2)
    assert micro_batch_size(config, world_size=3, train_size=100, eval_size=None) == 2
