"""A reference image of text evaluation that cannot be decoded stops the run naming it: the next image standing in
for it (what training does) would be scored against the missing image's caption and layout."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.cli.evaluate_text import _reference_loader, open_reference, reference_images

SIZE = 16


def write_captioned(folder, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * index, dtype=np.uint8)).save(buffer, format="PNG")
        (folder / f"{index}.png").write_bytes(buffer.getvalue())
        (folder / f"{index}.txt").write_text(f"picture {index}")


def test_reference_images_are_read_in_order_each_its_own(tmp_path):
    write_captioned(tmp_path, 3)
    reference = torch.utils.data.Subset(open_reference(f"captions:{tmp_path}", SIZE, 3, "skip"), [2, 0])
    images, indices = next(iter(_reference_loader(reference)))
    assert indices.tolist() == [2, 0] and len(reference_images(reference)) == 2
    assert images[:, 0, 0, 0].add(1).mul(127.5).round().tolist() == [80.0, 0.0]  # the pixels of 2.png, 0.png


def test_a_truncated_reference_image_is_an_error_naming_it_not_replaced_by_the_next(tmp_path):
    write_captioned(tmp_path, 3)
    data = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(data[: len(data) // 2])  # the header reads; the pixels are cut off
    reference = open_reference(f"captions:{tmp_path}", SIZE, 3, "skip")
    assert len(reference) == 3  # the header check passes: only decoding finds it
    named = rf"reference image {tmp_path / '1.png'} cannot be decoded .*replace or delete"
    with pytest.raises(ValueError, match=named):
        list(_reference_loader(reference))


def test_a_truncated_sample_image_is_an_error_naming_it(tmp_path):
    from nextscale.data.sample_sets import SampleSet

    write_captioned(tmp_path, 2)
    data = (tmp_path / "1.png").read_bytes()
    (tmp_path / "1.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"sample image {tmp_path / '1.png'} cannot be read"):
        list(SampleSet(tmp_path).batches(2))
