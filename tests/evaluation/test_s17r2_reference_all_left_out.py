"""A reference folder whose every image is truncated (headers pass, decoding fails) under --bad-images skip: the
feature pass got no batch at all and stopped with "no images were given to the feature extractor", which names
neither the reference nor its files; it now says that every image was left out, naming them."""

import numpy as np
import pytest
from PIL import Image

from nextscale.cli.evaluate_class import open_class_reference
from nextscale.cli.evaluate_reference import ReadableReference, reference_batches
from nextscale.evaluation.features import cached_features

SIZE = 32


def test_a_reference_of_only_undecodable_images_is_named(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "real" / "class0").mkdir(parents=True)
    for index in range(4):
        path = tmp_path / "real" / "class0" / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    folder = open_class_reference(str(tmp_path / "real"), SIZE, 1, "test", "skip")
    read = ReadableReference(folder, leave_out=True)
    with pytest.raises(ValueError, match=r"none of the 4 reference images can be decoded: .*0\.png \(truncated"):
        cached_features(lambda images: images.flatten(1), lambda: reference_batches(read), None, key={})
