"""TextEncoding (batching, padding, CFG concatenation) and the pooling functions; no transformers needed."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from nextscale.text import TextEncoding
from nextscale.text.pooling import POOLINGS, masked_max, masked_mean, mean_all


def make_encoding(lengths: list[int], total: int, width: int = 4, seed: int = 0) -> TextEncoding:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(lengths), total, width, generator=generator)
    mask = torch.tensor([[1] * length + [0] * (total - length) for length in lengths])
    return TextEncoding(hidden, mask, torch.randn(len(lengths), width, generator=generator))


def test_cat_pads_shorter_encodings_with_zeros_and_mask_zero():
    prompts = make_encoding([5, 3], total=5)
    null = make_encoding([2], total=2, seed=1)
    batch = TextEncoding.cat([prompts, null, null])
    assert len(batch) == 4 and batch.length == 5 and batch.width == 4
    assert torch.equal(batch.hidden[:2], prompts.hidden)
    assert torch.equal(batch.hidden[2:, :2], null.hidden.expand(2, -1, -1))
    assert torch.equal(batch.hidden[2:, 2:], torch.zeros(2, 3, 4))
    assert batch.mask.tolist()[2:] == [[1, 1, 0, 0, 0]] * 2
    assert torch.equal(batch.pooled, torch.cat([prompts.pooled, null.pooled, null.pooled]))


def test_cat_refuses_mixed_widths_and_empty_lists():
    with pytest.raises(ValueError, match="different widths"):
        TextEncoding.cat([make_encoding([2], 2, width=4), make_encoding([2], 2, width=8)])
    with pytest.raises(ValueError, match="at least one"):
        TextEncoding.cat([])


def test_shape_and_dtype_checks():
    encoding = make_encoding([2, 1], total=3)
    with pytest.raises(ValueError, match="mask must be"):
        TextEncoding(encoding.hidden, encoding.mask[:, :2], encoding.pooled)
    with pytest.raises(ValueError, match="pooled must be"):
        TextEncoding(encoding.hidden, encoding.mask, encoding.pooled[:1])
    with pytest.raises(ValueError, match="int64"):
        TextEncoding(encoding.hidden, encoding.mask.bool(), encoding.pooled)
    with pytest.raises(ValueError, match="only lengthens"):
        encoding.pad_to(2)


def test_rows_and_device():
    encoding = make_encoding([3, 2, 1], total=3)
    assert len(encoding[1]) == 1 and torch.equal(encoding[1].hidden[0], encoding.hidden[1])
    assert torch.equal(encoding[-1].mask, encoding.mask[2:])
    moved = encoding.to("cpu")
    assert moved.device == torch.device("cpu") and torch.equal(moved.hidden, encoding.hidden)


@pytest.mark.parametrize("index", [np.int64(1), np.int32(-2), torch.tensor(1)], ids=["np.int64", "np.int32", "0-d"])
def test_numpy_and_tensor_integers_keep_the_batch_dimension_like_a_python_int(index):
    encoding = make_encoding([3, 2, 1], total=3)
    row = encoding[index]
    assert len(row) == 1 and torch.equal(row.hidden, encoding[1].hidden) and torch.equal(row.mask, encoding[1].mask)
    with pytest.raises(IndexError, match="out of range"):
        encoding[np.int64(3)]
    with pytest.raises(IndexError, match="out of range"):
        encoding[-4]


def test_masked_pooling_ignores_padding_values_and_mean_all_does_not():
    encoding = make_encoding([3, 1], total=4)
    changed = encoding.hidden.clone()
    changed[encoding.mask == 0] = 100.0
    assert torch.equal(masked_mean(changed, encoding.mask), masked_mean(encoding.hidden, encoding.mask))
    assert torch.equal(masked_max(changed, encoding.mask), masked_max(encoding.hidden, encoding.mask))
    assert not torch.equal(mean_all(changed, encoding.mask), mean_all(encoding.hidden, encoding.mask))
    expected = torch.stack([encoding.hidden[0, :3].mean(0), encoding.hidden[1, 0]])
    torch.testing.assert_close(masked_mean(encoding.hidden, encoding.mask), expected)


def test_pooling_of_a_row_without_real_tokens_is_finite():
    hidden, mask = torch.randn(1, 3, 4), torch.zeros(1, 3, dtype=torch.int64)
    for name in ("mean", "mean_sqrt_len", "mean_all", "cls"):
        assert torch.isfinite(POOLINGS[name](hidden, mask)).all(), name


def test_import_is_light():
    code = "import sys, nextscale.text; print('transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
