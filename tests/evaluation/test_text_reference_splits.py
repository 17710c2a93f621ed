"""``evaluate --reference captions:DIR`` of a text model: which captioned images FID is measured against."""

import io

import numpy as np
import pytest
from PIL import Image

from nextscale.cli.evaluate_text import open_reference

SIZE = 16


def write_captioned(folder, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        buffer = io.BytesIO()
        Image.fromarray(np.full((SIZE, SIZE, 3), 90, dtype=np.uint8)).save(buffer, format="PNG")
        (folder / f"{name}.png").write_bytes(buffer.getvalue())
        (folder / f"{name}.txt").write_text(f"a picture called {name}")


def test_a_reference_with_train_and_val_splits_is_refused_naming_both(tmp_path):
    # Read whole, the training images (sorted first) would be the first --num references and their captions the
    # prompts: FID against the data the model was trained on, while the layout says which images are held out.
    write_captioned(tmp_path / "train", ["a", "b", "c"])
    write_captioned(tmp_path / "val", ["d", "e"])
    with pytest.raises(ValueError, match="holds a train/ and a val/ split") as error:
        open_reference(f"captions:{tmp_path}", SIZE, 3, "skip")
    assert f"--reference captions:{tmp_path / 'val'} (held out)" in str(error.value)
    assert len(open_reference(f"captions:{tmp_path / 'val'}", SIZE, 3, "skip")) == 2
    assert len(open_reference(f"captions:{tmp_path / 'train'}", SIZE, 3, "skip")) == 3
    (tmp_path / "val").rename(tmp_path / "other")  # train/ alone is no split: all of it, as before
    assert len(open_reference(str(tmp_path), SIZE, 3, "skip")) == 5


def test_a_class_reference_with_train_and_val_splits_is_refused_naming_both(tmp_path):
    # As class folders, train/ and val/ became two classes of mixed images.
    from nextscale.cli.evaluate_class import open_class_reference

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            write_captioned(tmp_path / split / label, [f"{label}{i}" for i in range(3)])
    with pytest.raises(ValueError, match="holds a train/ and a val/ split") as error:
        open_class_reference(str(tmp_path), SIZE, 3, "test", "skip")
    assert f"--reference {tmp_path / 'val'} (held out) or {tmp_path / 'train'}" in str(error.value)
    assert open_class_reference(str(tmp_path / "val"), SIZE, 3, "test", "skip").classes == ["cat", "dog"]
