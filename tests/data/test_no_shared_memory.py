"""An image folder still opens and skips bad files where shared memory cannot be had (a full /dev/shm)."""

import torch
from PIL import Image

from nextscale.data.images import ImageFolderDataset


def test_a_dataset_opens_without_shared_memory_and_counts_bad_files_read_here(tmp_path, monkeypatch, caplog):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (16, 16), (200, 0, 0)).save(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "1.png").write_bytes(b"not an image")

    def no_room(self):
        raise RuntimeError("unable to write to file </torch_1_2>: No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_room)
    dataset = ImageFolderDataset(tmp_path, 16, train=False, bad_images="skip")  # raised before any image was read
    assert "no shared memory" in caplog.text
    assert [label for _, label in (dataset[0], dataset[1])] == [0, 0]  # the bad file's stand-in is the good one
    assert dataset.skip_counts() == {"unreadable": 1}
