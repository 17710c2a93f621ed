"""``Pipeline.edit_images``: a batch of different images edited in one call, each keeping its own tokens."""

import numpy as np
import pytest
import torch
from tiny_pipelines import tiny_class_pipeline

from nextscale.sampling.editing import PreparedImage, box_mask, keep_mask_for

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


def images(pipe, count: int, seed: int = 0) -> torch.Tensor:
    channels, size = pipe.tokenizer.config.in_channels, pipe.image_size
    return torch.rand(count, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def inpaint_mask(pipe) -> torch.Tensor:
    return keep_mask_for("inpaint", box_mask(pipe.transformer.config.scale_sides[-1], (0.25, 0.25, 0.75, 0.75)))


def test_one_image_is_the_single_image_edit(pipe):
    image, keep = images(pipe, 1), inpaint_mask(pipe)
    batched = pipe.edit_images(image, keep, [3], seed=5, cfg=2.0, output_type="pt")
    single = pipe.edit_with_keep_mask(
        PreparedImage(image, None, (0, 0, 0, 0)), keep, 3, seed=5, cfg=2.0, output_type="pt"
    )
    assert torch.equal(batched.tokens, single.tokens)
    assert torch.equal(batched.images, single.images)


def test_each_row_keeps_its_own_image_and_aims_at_its_own_class(pipe):
    batch, keep = images(pipe, 3), inpaint_mask(pipe)
    out = pipe.edit_images(batch, keep, [1, None, 7], seed=0, output_type="pt")
    assert out.class_labels.tolist() == [1, pipe.transformer.config.null_class_id, 7]
    expected = pipe.tokenizer.encode(batch)  # K tensors (3, side_k ** 2)
    from nextscale.sampling.editing import scale_keep_masks

    masks = scale_keep_masks(keep, pipe.transformer.config.scale_sides)
    start = 0
    for scale_tokens, mask in zip(expected, masks):
        width = scale_tokens.shape[1]
        kept = mask.expand(3, -1)
        assert torch.equal(out.tokens[:, start : start + width][kept], scale_tokens[kept])  # row b: image b's tokens
        start += width
    # the rows differ where they were kept: not one image broadcast over the batch
    last = out.tokens[:, -expected[-1].shape[1] :]
    assert not torch.equal(last[0][masks[-1][0]], last[1][masks[-1][0]])


def test_mismatched_inputs_are_refused_in_words(pipe):
    keep = inpaint_mask(pipe)
    with pytest.raises(ValueError, match="one class label per image: 2 images, 1 class labels"):
        pipe.edit_images(images(pipe, 2), keep, [1])
    with pytest.raises(ValueError, match=r"images must be \(B, "):
        pipe.edit_images(torch.zeros(2, 3, 8, 8), keep)
    with pytest.raises(TypeError, match="makes its own constraint"):
        pipe.edit_images(images(pipe, 1), keep, constraint=None)


def test_the_null_id_is_the_unconditional_edit_and_bad_inputs_are_named(pipe):
    batch, keep = images(pipe, 2), inpaint_mask(pipe)
    null_id = pipe.transformer.config.null_class_id
    by_id = pipe.edit_images(batch, keep, [null_id, 2], seed=1, output_type="pt")
    by_none = pipe.edit_images(batch, keep, [None, 2], seed=1, output_type="pt")
    assert torch.equal(by_id.tokens, by_none.tokens)
    with pytest.raises(TypeError, match="float tensor"):
        pipe.edit_images(((batch + 1) * 127.5).to(torch.uint8), keep)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        pipe.edit_images(batch * 3, keep)
    side = pipe.transformer.config.scale_sides[-1]
    with pytest.raises(ValueError, match=rf"keep_mask must be \({side}, {side}\)"):
        pipe.edit_images(batch, keep[:-1])
    with pytest.raises(ValueError, match="one per image"):
        pipe.edit_images(batch, keep.expand(3, -1, -1))
    per_image = pipe.edit_images(batch, keep.expand(2, -1, -1), seed=1, output_type="pt")  # one mask per image
    assert torch.equal(per_image.tokens, pipe.edit_images(batch, keep, seed=1, output_type="pt").tokens)


def test_keep_masks_that_would_keep_another_region_or_crash_deep_are_refused_in_words(pipe):
    """A 0/255 mask kept more at the coarse scales (bilinear values like 63.75 pass > 0.5), NaN images were taken,
    and edit_with_keep_mask crashed on a NumPy mask and resized a mask of the wrong size silently."""
    batch, keep = images(pipe, 2), inpaint_mask(pipe)
    side = pipe.transformer.config.scale_sides[-1]
    with pytest.raises(ValueError, match="only 0 and 1"):
        pipe.edit_images(batch, keep.to(torch.uint8) * 255)
    as_ints = pipe.edit_images(batch, keep.to(torch.uint8), seed=1, output_type="pt")  # 0/1 is fine
    assert torch.equal(as_ints.tokens, pipe.edit_images(batch, keep, seed=1, output_type="pt").tokens)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        pipe.edit_images(torch.full_like(batch, float("nan")), keep)
    prepared = PreparedImage(batch[:1], None, (0, 0, 0, 0))
    from_numpy = pipe.edit_with_keep_mask(prepared, keep.numpy(), 3, seed=5, output_type="pt")
    assert torch.equal(from_numpy.tokens, pipe.edit_with_keep_mask(prepared, keep, 3, seed=5, output_type="pt").tokens)
    assert from_numpy.keep_mask.dtype == torch.bool
    with pytest.raises(ValueError, match=rf"keep_mask must be \({side}, {side}\)"):
        pipe.edit_with_keep_mask(prepared, torch.ones(4 * side, 4 * side, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"keep_mask must be \({side}, {side}\)"):
        pipe.edit_with_keep_mask(prepared, keep.expand(3, -1, -1), num_images=3)
    with pytest.raises(ValueError, match="only 0 and 1"):
        pipe.edit_with_keep_mask(prepared, keep.float() * 0.7)


def test_an_empty_image_is_refused_in_words(pipe):
    with pytest.raises(ValueError, match="the image is empty"):
        pipe.edit(np.zeros((0, 16, 3), np.uint8), box=(0, 0, 0.5, 0.5))
