"""Data: image folders, Fashion-MNIST, the VAR image transform, grids and a resumable distributed sampler."""

from nextscale.data.fashion_mnist import CLASS_NAMES, FashionMNIST, load_fashion_mnist, read_idx, write_idx
from nextscale.data.images import ImageFolderDataset, load_image, make_grid, open_image, save_grid, to_pil
from nextscale.data.samplers import ResumableDistributedSampler
from nextscale.data.transforms import ImageTransform

__all__ = [
    "CLASS_NAMES",
    "FashionMNIST",
    "ImageFolderDataset",
    "ImageTransform",
    "ResumableDistributedSampler",
    "load_fashion_mnist",
    "load_image",
    "make_grid",
    "open_image",
    "read_idx",
    "save_grid",
    "to_pil",
    "write_idx",
]
