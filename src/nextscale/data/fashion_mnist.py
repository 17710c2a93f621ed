"""Fashion-MNIST: an IDX file reader/writer and a dataset of 28x28 grayscale clothes in 10 classes.

Files (gzip or raw): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` (60000 images) and
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (10000 images). The default folder is the env var
``NEXTSCALE_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install
dataset-fashion-mnist``).

IDX format: a 4-byte magic ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
values in C order (big-endian for multi-byte types).

References: Xiao et al. 2017, "Fashion-MNIST" (arXiv:1708.07747); LeCun's MNIST page (IDX format).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from nextscale.pretrained import atomic_write

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

ENV_VAR = "NEXTSCALE_FASHION_MNIST"
SYSTEM_ROOT = "/usr/share/datasets/fashion-mnist"
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NATIVE_SIZE = 28

# IDX type code -> NumPy dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: bad magic number, truncated data or a broken gzip stream (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path} is a broken gzip file ({err}); download it again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {raw[:4].hex()!r}, expected 0000<type><ndim>)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header promises {ndim} dimensions but the file ends early")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "longer than its header says"
        raise ValueError(f"{path} is {problem}: shape {shape} needs {expected} data bytes, found {actual}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz`` (atomic write)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in _IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise TypeError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64")
    code = codes[native]
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=9, mtime=0)  # mtime=0: identical bytes on every run
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(payload))


def default_root() -> Path:
    """``$NEXTSCALE_FASHION_MNIST`` if set, else the Debian package's folder."""
    return Path(os.environ.get(ENV_VAR) or SYSTEM_ROOT)


def _find(root: Path, stem: str) -> Path:
    if root.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST is read from the folder holding its four IDX files, not from one file ({root}): pass its "
            f"folder, {root.parent}"
        )
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}. Install the data with "
        f"`apt-get install dataset-fashion-mnist` (files land in {SYSTEM_ROOT}), or pass --data fashion-mnist:DIR / "
        f"set {ENV_VAR}=DIR for a folder DIR holding the four IDX files"
    )


def load_fashion_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Read one split as arrays.

    Args:
        root: folder with the IDX files; None uses ``default_root()``.
        split: "train" or "test".

    Returns:
        images uint8 (N, 28, 28) with 0 = background, labels int64 (N,) in [0, 10).
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    root = default_root() if root is None else Path(root)
    image_stem, label_stem = SPLIT_FILES[split]
    image_path, label_path = _find(root, image_stem), _find(root, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path} holds {images.dtype} of shape {images.shape}, expected uint8 (N, H, W)")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{label_path} holds {labels.shape} labels for {len(images)} images in {image_path}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise ValueError(f"{label_path} has labels outside [0, {len(CLASS_NAMES)})")
    return images, labels


def prepare_images(images: np.ndarray, size: int = 32, channels: int = 1) -> torch.Tensor:
    """Turn uint8 28x28 images into model input.

    Size 32 (the default) pads 2 background pixels on each side: lossless, and 32 = 2^5 suits the tokenizer's
    downsampling. Size 28 keeps the images as they are. Any other size is a bicubic resize with Pillow.

    Args:
        images: uint8 (N, 28, 28) or (28, 28).
        size: output side in pixels.
        channels: 1, or 3 to repeat the gray channel as RGB.

    Returns:
        float32 tensor (N, channels, size, size) in [-1, 1] (or (channels, size, size) for one image).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    single = images.ndim == 2
    batch = images[None] if single else images
    height, width = batch.shape[1:]
    if size == height + 4 and size == width + 4:
        batch = np.pad(batch, ((0, 0), (2, 2), (2, 2)))  # background is 0 (black)
    elif size != height or size != width:
        batch = np.stack(
            [np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)) for image in batch]
        )
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).float().div(127.5).sub(1.0)
    tensor = tensor.unsqueeze(1).expand(-1, channels, -1, -1).contiguous()  # (N, H, W) -> (N, C, H, W)
    return tensor[0] if single else tensor


class FashionMNIST(Dataset):
    """Fashion-MNIST as (image tensor in [-1, 1], label) pairs.

    Args:
        root: folder with the IDX files (gzip or raw); None uses ``$NEXTSCALE_FASHION_MNIST`` or
            ``/usr/share/datasets/fashion-mnist``.
        split: "train" (60000 images) or "test" (10000 images).
        size: output side; 32 pads the 28x28 images by 2 px of background, other sizes resize (bicubic).
        channels: 1 (grayscale) or 3 (gray repeated as RGB).

    Example:
        >>> dataset = FashionMNIST(split="test")
        >>> image, label = dataset[0]  # (1, 32, 32) in [-1, 1], 9 ("Ankle boot")
    """

    classes = CLASS_NAMES

    def __init__(
        self, root: str | os.PathLike | None = None, split: str = "train", size: int = 32, channels: int = 1
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.images, self.labels = load_fashion_mnist(root, split)
        self.split = split
        self.size = size
        self.classes = list(CLASS_NAMES)  # label i is classes[i], as for an image folder
        self.channels = channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Returns (image (channels, size, size) float32 in [-1, 1], label in [0, 10))."""
        return prepare_images(self.images[index], self.size, self.channels), int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split at once: images (N, channels, size, size) in [-1, 1], labels int64 (N,)."""
        return prepare_images(self.images, self.size, self.channels), torch.from_numpy(self.labels)
