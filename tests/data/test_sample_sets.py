"""Sample sets on disk: the streamed .npz (OpenAI's evaluation format) and sample folders, read back batch by batch."""

import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from nextscale.data.grids import to_pil
from nextscale.data.sample_sets import NpzImageWriter, SampleSet


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    """What a PNG keeps of images in [-1, 1], back in [-1, 1]."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)


def test_streamed_npz_is_what_numpy_loads_and_reads_back_in_batches(tmp_path):
    torch.manual_seed(0)
    images = torch.rand(7, 3, 8, 8) * 2.2 - 1.1  # values beyond [-1, 1] are clamped as in a PNG
    path = tmp_path / "samples.npz"
    with NpzImageWriter(path, count=7, side=8) as archive:
        archive.add(images[:4], [3, 1, 4, 1])
        archive.add(images[4:], [5, 9, 2])
    loaded = np.load(path)
    assert sorted(loaded.files) == ["arr_0", "arr_1"]
    assert loaded["arr_0"].dtype == np.uint8 and loaded["arr_0"].shape == (7, 8, 8, 3)
    np.testing.assert_array_equal(loaded["arr_0"], np.stack([np.asarray(p) for p in to_pil(images)]))
    assert loaded["arr_1"].tolist() == [3, 1, 4, 1, 5, 9, 2] and loaded["arr_1"].dtype == np.int64

    samples = SampleSet(path)
    assert (samples.count, samples.side, samples.labels) == (7, 8, [3, 1, 4, 1, 5, 9, 2])
    batches = list(samples.batches(3))
    assert [len(b) for b, _ in batches] == [3, 3, 1]
    assert torch.equal(torch.cat([b for b, _ in batches]), eight_bit(images))
    assert torch.cat([labels for _, labels in batches]).tolist() == samples.labels
    assert [len(b) for b, _ in samples.batches(4, limit=5)] == [4, 1]


def test_gray_images_become_rgb_and_unlabelled_sets_have_no_arr_1(tmp_path):
    gray = torch.linspace(-1, 1, 2 * 4 * 4).reshape(2, 1, 4, 4)
    path = tmp_path / "gray.npz"
    with NpzImageWriter(path, count=2, side=4) as archive:
        archive.add(gray)
    loaded = np.load(path)
    assert loaded.files == ["arr_0"]
    assert (loaded["arr_0"][..., 0] == loaded["arr_0"][..., 2]).all()
    assert SampleSet(path).labels is None
    images, labels = next(SampleSet(path).batches(8))
    assert torch.equal(images[:, 1:2], eight_bit(gray)) and labels.tolist() == [-1, -1]


def test_numpy_savez_archives_are_read_too(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", pixels, np.arange(5))
    np.savez_compressed(tmp_path / "compressed.npz", pixels)
    for name, labels in (("plain.npz", [0, 1, 2, 3, 4]), ("compressed.npz", None)):
        samples = SampleSet(tmp_path / name)
        assert samples.labels == labels
        read = torch.cat([images for images, _ in samples.batches(2)])
        assert torch.equal(read.add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(pixels))


def test_an_unfinished_archive_is_never_left_behind(tmp_path):
    path = tmp_path / "short.npz"
    with pytest.raises(ValueError, match="to hold 4 images, but 2 were written"):
        with NpzImageWriter(path, count=4, side=4) as archive:
            archive.add(torch.zeros(2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="interrupted"):
        with NpzImageWriter(path, count=4, side=4) as archive:
            archive.add(torch.zeros(2, 3, 4, 4))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # neither the archive nor its temporary file


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ([1, 2], None, "give labels with every batch"),
        (None, [1, 2], "give labels with every batch"),
        ([1], None, "2 images but 1 labels"),
    ],
)
def test_labels_go_with_every_batch_or_none(tmp_path, first, second, message):
    archive = NpzImageWriter(tmp_path / "x.npz", count=4, side=2)
    with pytest.raises(ValueError, match=message):
        archive.add(torch.zeros(2, 3, 2, 2), first)
        archive.add(torch.zeros(2, 3, 2, 2), second)
    archive.abort()
    with pytest.raises(ValueError, match="holds 1 images; 2 were given"):
        NpzImageWriter(tmp_path / "y.npz", count=1, side=2).add(torch.zeros(2, 3, 2, 2))


def test_folder_order_follows_the_index_and_labels_come_from_names(tmp_path):
    for index, label in ((9999, 3), (10000, 1), (2, 7)):
        Image.new("L", (4, 4), color=index % 256).save(tmp_path / f"{index:04d}_class{label}.png")
    (tmp_path / "sample-settings.json").write_text("{}")  # not an image: ignored
    (tmp_path / "._0002_class7.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork: ignored
    samples = SampleSet(tmp_path)
    assert [p.name for p in samples.files] == ["0002_class7.png", "9999_class3.png", "10000_class1.png"]
    assert samples.labels == [7, 3, 1] and samples.side == 4
    images, labels = next(samples.batches(8))
    assert images.shape == (3, 3, 4, 4) and labels.tolist() == [7, 3, 1]
    assert images[:, :, 0, 0].add(1).mul(127.5).round()[:, 0].tolist() == [2, 9999 % 256, 10000 % 256]

    Image.new("RGB", (4, 4)).save(tmp_path / "extra.png")  # one name without a label: no labels at all
    assert SampleSet(tmp_path).labels is None


def test_bad_sample_sets_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SampleSet(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        SampleSet(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "mixed" / "0000.png")
    Image.new("RGB", (5, 5)).save(tmp_path / "mixed" / "0001.png")
    with pytest.raises(ValueError, match=r"0001.png is 5x5; the samples must be square, all one size"):
        list(SampleSet(tmp_path / "mixed").batches(4))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="is not an .npz archive"):
        SampleSet(tmp_path / "text.npz")
    np.savez(tmp_path / "floats.npz", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"arr_0 is float32 \(2, 4, 4, 3\); expected uint8"):
        SampleSet(tmp_path / "floats.npz")
    np.savez(tmp_path / "nchw.npz", np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="expected uint8 \\(N, H, W, 3\\)"):
        SampleSet(tmp_path / "nchw.npz")
    np.savez(tmp_path / "named.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="has no arr_0"):
        SampleSet(tmp_path / "named.npz")


def test_a_truncated_archive_is_reported(tmp_path):
    path = tmp_path / "cut.npz"
    with NpzImageWriter(path, count=4, side=4) as archive:
        archive.add(torch.zeros(4, 3, 4, 4))
    with zipfile.ZipFile(path) as source:
        data = source.read("arr_0.npy")
    with zipfile.ZipFile(path, "w") as target:
        target.writestr("arr_0.npy", data[: len(data) - 60])  # the header still says 4 images
    with pytest.raises(ValueError, match="is truncated: arr_0 holds 2 complete images, its header says 4"):
        list(SampleSet(path).batches(2))


@pytest.mark.parametrize("count", [4, 64])  # 768 bytes are read with the header; 12 kB only batch by batch
def test_a_member_with_a_bad_crc_is_named_on_one_line(tmp_path, count):
    path = tmp_path / "flipped.npz"
    np.savez(path, arr_0=np.zeros((count, 8, 8, 3), np.uint8))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside arr_0's pixels: only the CRC-32 notices
    path.write_bytes(bytes(data))
    message = rf"^{re.escape(str(path))} is damaged \(Bad CRC-32 for file 'arr_0.npy'\); write the archive again"
    with pytest.raises(ValueError, match=message):
        list(SampleSet(path).batches(2))  # a small member is checked when its header is read, a large one at its end


def test_a_failed_finish_leaves_no_temporary_file(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    archive = NpzImageWriter(tmp_path / "x.npz", count=2, side=4)
    archive.add(torch.zeros(2, 3, 4, 4), [0, 1])
    monkeypatch.setattr(np.lib.format, "write_array", full_disk)  # the labels are written by close()
    with pytest.raises(OSError, match="No space left"):
        archive.close()
    assert list(tmp_path.iterdir()) == []


def test_sample_files_are_read_as_references_are(tmp_path):
    """A 16-bit PNG is scaled to 8 bits (not clipped to white) and transparency goes on white, as the reference
    images are read, so the same picture scores the same on both sides."""
    from nextscale.data.sample_sets import open_sample_image

    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    deep = np.asarray(open_sample_image(tmp_path / "deep.png"))
    assert deep.shape == (16, 16, 3) and deep[..., 0].mean() == pytest.approx(127.5, abs=1.0)
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))  # fully transparent red
    clear.save(tmp_path / "clear.png")
    assert (np.asarray(open_sample_image(tmp_path / "clear.png")) == 255).all()  # white, as a viewer shows it
