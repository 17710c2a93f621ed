"""The ImageNet-style class folder as a dataset of (image, label), its bad files skipped or refused.

Folder layout (as for ImageNet ``train/`` and ``val/``)::

    root/
      class_a/  001.png  002.jpg ...
      class_b/  ...

Classes are the sub-folder names in sorted order, so label ``i`` is ``classes[i]`` on every machine.

Bad files never stop a long run late. Each file is checked when it is read (``data.image_reading``): unreadable
(not an image, a corrupt header), truncated (fails to decode), tiny (shorter side under ``max(TINY_PIXELS,
TINY_FRACTION`` x the training side); larger images smaller than the training side are upscaled), huge (more pixels
than Pillow's decompression-bomb limit ``Image.MAX_IMAGE_PIXELS``; a JPEG is instead decoded shrunk by 2, 4 or 8 to
fit it, ``jpeg_reduction``) or of a mode Pillow cannot convert. Every mode is converted to the training channels (see
``transforms.convert_mode``: alpha on white, 16- and 32-bit scaled, colour profiles applied).
With ``bad_images="skip"`` a bad file is counted, logged once and replaced by the next good file in the
folder order (deterministic: the same on every rank, worker and resume); with ``"fail"`` it raises a
ValueError naming the file. ``ImageFolderDataset.scan`` checks every header up front (fast: nothing is
decoded), so most bad files are counted, or refused, before training starts; the commands then take them out
of the dataset (``leave_out_bad``), so only a file found bad when read (truncated) has a stand-in. A pass that
must see every image once (tokenizing) reads with ``ImageFolderDataset.read``, which has no stand-in: it raises.

References: VAR ``utils/data.py`` (ImageFolder + the VAR transform).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nextscale.data.bad_image_record import WorkerBadFiles
from nextscale.data.image_listing import COMPANION_EXTENSIONS, IMAGE_EXTENSIONS, is_hidden, visible_files
from nextscale.data.image_reading import BAD_IMAGE_POLICIES, BadImageError, check_image_header, read_training_image
from nextscale.data.transforms import MID_RESO, ImageTransform

logger = logging.getLogger(__name__)

SCAN_LIMIT = 50_000  # folders with more files are not scanned up front (about 1 ms a file); checked as read


class ImageFolderDataset(Dataset):
    """``root/class_name/*.png|jpg|jpeg|webp`` as (image tensor in [-1, 1], label) pairs.

    Args:
        root: folder with one sub-folder per class (searched recursively for images).
        size: output side in pixels.
        train: VAR training transform (random crop, optional flip) or evaluation transform (center crop).
        mid_reso: see ``ImageTransform`` (VAR default 1.125).
        hflip: random horizontal flips in training.
        channels: 3 (RGB) or 1 (grayscale); every image mode is converted (see the module docstring).
        bad_images: "skip": a bad file is counted in ``skipped``, logged once, and the next good file in
            folder order is returned in its place; "fail" (default): a ``BadImageError`` names the file.
        seed: if given, the random crop and flip of sample ``index`` in epoch ``e`` come from
            ``numpy.random.default_rng([seed, e, index])``, identical across workers, machines and resumes
            (call ``set_epoch`` each epoch). If None, torch's global generator is used.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        size: int,
        train: bool = True,
        mid_reso: float = MID_RESO,
        hflip: bool = False,
        channels: int = 3,
        bad_images: str = "fail",
        seed: int | None = None,
    ) -> None:
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        if seed is not None and seed < 0:  # else every read would fail, and tokenizing would call the images bad
            raise ValueError(f"seed must be 0 or more (it seeds numpy.random.default_rng), got {seed}")
        self.root = Path(root)
        self.classes, self.samples = self.list_samples(self.root)
        self.class_to_idx = {name: idx for idx, name in enumerate(self.classes)}
        self.origin = str(self.root)  # where the images come from, for the data summary (see data.folders)
        self.transform = ImageTransform(size, train=train, mid_reso=mid_reso, hflip=hflip, channels=channels)
        self.bad_images = bad_images
        self.seed = seed
        self.epoch = 0
        # file -> reason, for files found bad (by ``scan`` or when read in this process); shared by ``select``
        # copies, so keyed by file, not by index.
        self.skipped: dict[Path, str] = {}
        # Files found bad while read in DataLoader worker processes, so that the main process counts them too and
        # later epochs' workers (forked after ``set_epoch`` gathers them) pass over them without warning again.
        self.worker_findings = WorkerBadFiles([path for path, _ in self.samples])
        self.headers: dict[Path, tuple[int, int]] = {}  # file -> (width, height) of usable headers, shared likewise
        self.left_out: list[Path] = []  # bad files taken out of ``samples`` by ``leave_out_bad`` (still counted)
        self.split_note: str | None = None  # how a held-out split was carved from this folder (data.folders)

    def center_cropped(self) -> ImageFolderDataset:
        """The same files read as held-out images are (center crops, no flips), without listing the folder again
        (which would repeat its warnings); file checks are shared, as with ``select``."""
        view = copy.copy(self)
        t = self.transform
        view.transform = ImageTransform(t.size, train=False, mid_reso=t.mid_reso, hflip=False, channels=t.channels)
        view.left_out = list(self.left_out)
        return view

    @staticmethod
    def class_names(root: Path) -> list[str]:
        """The sorted class sub-folder names of ``root`` (hidden and system folders such as macOS's ``__MACOSX``
        left out, see ``is_hidden``): label ``i`` is ``names[i]``."""
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist (expected root/class_name/*.png)")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
        if not classes:
            raise ValueError(
                f"{root} has no class sub-folders; expected {root}/CLASS_NAME/image.png, one sub-folder per class "
                f"(pictures without classes: all in one sub-folder, e.g. {root}/all/)"
            )
        return classes

    @staticmethod
    def list_samples(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
        """(sorted class names, [(file, label)] in sorted order) of ``root/class_name/**/image``, hidden files and
        folders (``is_hidden``: names starting with a dot, ``__MACOSX``) left out."""
        classes = ImageFolderDataset.class_names(root)
        samples: list[tuple[Path, int]] = []
        ignored: list[Path] = []  # files of a kind this reader does not take (.heic, .avif, .svg, ...)
        for label, name in enumerate(classes):
            # Hidden files and folders are not images of the class: macOS's ``._photo.jpg`` resource forks would
            # count as corrupt files, and ``.ipynb_checkpoints/`` copies as duplicates (as caption folders skip them).
            # A folder named x.jpg is no image (``visible_files`` lists files); a broken link is reported as unreadable.
            visible = visible_files(root / name)
            files = [path for path in visible if path.suffix.lower() in IMAGE_EXTENSIONS]
            ignored.extend(
                path for path in visible if path.suffix.lower() not in IMAGE_EXTENSIONS + COMPANION_EXTENSIONS
            )
            if not files:
                logger.warning("class folder %s holds no images", root / name)
            samples.extend((path, label) for path in files)
        if ignored:
            kinds = sorted({path.suffix.lower() or "(no ending)" for path in ignored})
            logger.warning(
                "ignoring %d file(s) of %s in %s's class folders (e.g. %s): images are read from %s; convert them to "
                "use them",
                len(ignored),
                ", ".join(kinds),
                root,
                ignored[0],
                ", ".join(IMAGE_EXTENSIONS),
            )
        if not samples:
            raise ValueError(f"{root} holds no images with extensions {IMAGE_EXTENSIONS} in its class folders")
        return classes, samples

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops ``seed`` reproduces; the files the last epoch's workers found bad become
        known here, so that this epoch's workers pass over them without trying them again."""
        self.epoch = epoch
        self.gather_worker_findings()

    def __len__(self) -> int:
        return len(self.samples)

    def scan(self, limit: int = SCAN_LIMIT) -> dict[str, int] | None:
        """Check every file's header (nothing is decoded) and remember the bad ones, so reads skip them at once.

        Truncated files pass this check; they are caught when read. Returns the count of bad files per reason
        (plus "upscaled": usable files smaller than the training side), or None when the folder has more than
        ``limit`` files (checked only as they are read).
        """
        if len(self.samples) > limit:
            return None
        upscaled = 0
        for path, _ in self.samples:
            if path in self.skipped:
                continue
            if path not in self.headers:
                try:
                    self.headers[path] = check_image_header(path, self.transform.size, shrink_jpeg=True)
                except BadImageError as err:
                    self.record_bad(path, err.reason)
                    continue
            upscaled += min(self.headers[path]) < self.transform.size
        counts = self.skip_counts()
        counts["upscaled"] = upscaled
        return counts

    def usable_indices(self) -> list[int]:
        """Indices of the samples whose headers pass the checks (``scan`` first; every index when the folder is
        too big to scan)."""
        self.scan()
        return [index for index, (path, _) in enumerate(self.samples) if path not in self.skipped]

    def leave_out_bad(self) -> None:
        """Take the files found bad so far out of ``samples`` (``skip_counts`` still counts them).

        For passes that must see every image once (tokenizing, evaluation): there, standing in the next good
        file for a bad one would count that image twice.
        """
        self.left_out = self.left_out + [path for path, _ in self.samples if path in self.skipped]
        self.samples = [(path, label) for path, label in self.samples if path not in self.skipped]

    def record_bad(self, path: Path, reason: str) -> None:
        """Note ``path`` as bad here and in the shared record that the main process and other workers read."""
        self.skipped[path] = reason
        self.worker_findings.record(path, reason)

    def gather_worker_findings(self) -> None:
        """Take the files DataLoader workers found bad into ``skipped`` (counted and named like this process's)."""
        self.worker_findings.gather_into(self.skipped)

    def bad_files(self) -> list[tuple[Path, str]]:
        """(file, reason) of this dataset's bad files found so far, in folder order."""
        self.gather_worker_findings()
        mine = [path for path, _ in self.samples] + self.left_out
        return sorted((path, self.skipped[path]) for path in set(mine) if path in self.skipped)

    def skip_counts(self) -> dict[str, int]:
        """Bad files of this dataset found so far (by ``scan``, or when read here or in DataLoader workers), per
        reason."""
        self.gather_worker_findings()
        mine = {path for path, _ in self.samples} | set(self.left_out)
        counts: dict[str, int] = {}
        for path, reason in self.skipped.items():
            if path in mine:
                counts[reason] = counts.get(reason, 0) + 1
        return counts

    def _load(self, path: Path, index: int) -> torch.Tensor:
        """The file at ``path`` as sample ``index`` of this epoch; raises BadImageError."""
        image = read_training_image(path, self.transform.size, self.transform.channels)
        generator = None if self.seed is None else np.random.default_rng([self.seed, self.epoch, index])
        return self.transform(image, generator)

    def read(self, index: int) -> tuple[torch.Tensor, int]:
        """Sample ``index`` exactly, for passes that must see every image once (tokenizing): no stand-in.

        Returns:
            (image (C, size, size) float32 in [-1, 1], class index).
        Raises:
            BadImageError: the file cannot be used, whatever ``bad_images`` says (it is recorded in ``skipped``;
                the caller leaves it out or stops).
        """
        path, label = self.samples[index]
        try:
            return self._load(path, index), label
        except BadImageError as err:
            self.record_bad(path, err.reason)
            raise

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Returns (image (C, size, size) float32 in [-1, 1], class index)."""
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            if path in self.skipped and self.bad_images == "skip":
                continue
            try:
                return self._load(path, index), label
            except BadImageError as err:
                if self.bad_images == "fail":
                    raise
                self.record_bad(path, err.reason)
                logger.warning("skipping image %s (%s: %s)", path, err.reason, err.detail)
        raise ValueError(f"no image under {self.root} can be used; every file is bad (see the warnings)")
