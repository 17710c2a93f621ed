"""Sample folders (and reference folders evaluated as samples) read each image as training reads it
(``image_reading.upright``): a phone photo's EXIF turn applied, a 16-bit gray PNG's transparent value on white.

Before, ``open_sample_image`` opened and converted files itself, so FID compared a sideways or darkened copy of
such a file with the training data's upright, white-backed one.
"""

import numpy as np
from PIL import Image

from nextscale.data.image_reading import read_training_image
from nextscale.data.sample_sets import SampleSet, open_sample_image

SIDE = 8
TRANSPARENT = 1000  # a 16-bit value named transparent by the PNG's tRNS chunk


def as_read_by_training(path) -> np.ndarray:
    return np.asarray(read_training_image(path, SIDE, 3))


def test_a_sideways_photo_is_turned_upright_as_in_training(tmp_path):
    stored = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    stored[0, :] = (255, 0, 0)  # the stored top row is red; orientation 6 turns it into the right column
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    Image.fromarray(stored).save(tmp_path / "0000.png", exif=exif)

    picture = np.asarray(open_sample_image(tmp_path / "0000.png"))
    assert (picture[:, -1] == (255, 0, 0)).all() and (picture[0, :-1] == 0).all()
    np.testing.assert_array_equal(picture, as_read_by_training(tmp_path / "0000.png"))


def test_a_16bit_gray_transparent_value_reads_white_as_in_training(tmp_path):
    values = np.full((SIDE, SIDE), 32896, dtype=np.uint16)  # 16-bit mid-gray: 8-bit 128
    values[:, : SIDE // 2] = TRANSPARENT
    Image.fromarray(values).save(tmp_path / "0000_class3.png", transparency=TRANSPARENT)

    images, labels = next(SampleSet(tmp_path).batches(4))
    assert images.shape == (1, 3, SIDE, SIDE) and labels.tolist() == [3]
    assert (images[0, :, :, : SIDE // 2] == 1.0).all()  # white, not the dark gray 1000 / 257 = 4 would be
    expected = np.asarray(as_read_by_training(tmp_path / "0000_class3.png"), dtype=np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(images[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
