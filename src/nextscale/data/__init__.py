"""Data: image folders, captions, Fashion-MNIST and its scenes, the VAR transform, grids, a resumable sampler."""

from nextscale.data.caption_base import CaptionDataset
from nextscale.data.caption_folders import CaptionFolderDataset
from nextscale.data.caption_manifests import CaptionManifestDataset
from nextscale.data.caption_shards import CaptionShardDataset
from nextscale.data.captions import open_caption_dataset
from nextscale.data.fashion_mnist import CLASS_NAMES, FashionMNIST, load_fashion_mnist, read_idx, write_idx
from nextscale.data.grids import make_grid, save_grid, to_pil
from nextscale.data.image_reading import load_image, open_image
from nextscale.data.images import ImageFolderDataset
from nextscale.data.samplers import ResumableDistributedSampler
from nextscale.data.scenes import SceneConfig, SceneDataset, build_scenes, caption_for, parse_caption
from nextscale.data.transforms import ImageTransform

__all__ = [
    "CLASS_NAMES",
    "CaptionDataset",
    "CaptionFolderDataset",
    "CaptionManifestDataset",
    "CaptionShardDataset",
    "FashionMNIST",
    "ImageFolderDataset",
    "ImageTransform",
    "ResumableDistributedSampler",
    "SceneConfig",
    "SceneDataset",
    "build_scenes",
    "caption_for",
    "load_fashion_mnist",
    "load_image",
    "make_grid",
    "open_caption_dataset",
    "open_image",
    "parse_caption",
    "read_idx",
    "save_grid",
    "to_pil",
    "write_idx",
]
