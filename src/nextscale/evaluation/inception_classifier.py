"""The Inception-v3 output layer, for the Inception Score as published image-generation papers report it.

The FID TorchScript (``evaluation.inception``) stops at the 2048-d pool features; the Inception Score needs the
network's 1008-class output layer on top of them. That layer is a (1008, 2048) matrix, applied *without* its bias,
as in Salimans et al.'s ``inception_score.py``, OpenAI's ADM evaluation suite (the one VAR's IS figures come from)
and torch-fidelity's default ("logits_unbiased"): ``logits = features @ W.T``, then ``inception_score`` with 10
chunks after torch-fidelity's fixed shuffle (``RandomState(2020).permutation``), so the score does not depend on
the order the images come in: files written class by class would otherwise put few classes in each chunk (100
classes x 50 sharp predictions: 10.0 in class order, 90.6 shuffled). ADM's suite scores fixed chunks of 5,000 in
file order without shuffling: on a well-mixed 50,000-image file the two agree within the chunks' noise.

The matrix is read from a local file the user has, nothing is downloaded:
- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` or torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth`` (state dicts with ``fc.weight`` (1008, 2048)), read weights-only;
- NVIDIA's ``inception-2015-12-05.pt`` (the StyleGAN metrics TorchScript, which keeps the output layer);
- a ``.safetensors`` or ``.npz`` holding the matrix alone, (1008, 2048) or TensorFlow's (2048, 1008).

The layer only means something on top of the same network's features, so a file that carries the network's first
convolution (32, 3, 3, 3) is checked against the feature network's: a different network is refused.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nextscale.evaluation.inception import FEATURE_DIM, inception_score
from nextscale.pretrained import load_weights_only

NUM_CLASSES = 1008  # the 2015 Inception graph's classes: ImageNet's 1000 plus 8 unused outputs
STEM_SHAPE = (32, 3, 3, 3)  # the first convolution of Inception-v3, the fingerprint of the network
PREFERRED_NAMES = ("fc.weight", "output.weight", "logits.weight")
STEM_TOLERANCE = 1e-5  # both files hold TensorFlow's float32 values; a different network differs by ~0.1
SHUFFLE_SEED = 2020  # torch-fidelity's rng_seed for the order of the chunks
PUBLISHED_COUNT = 50_000  # the sample count published scores use (10 chunks of 5,000)


@dataclass(frozen=True)
class InceptionClassifier:
    """The output layer: ``logits(features (N, 2048)) -> (N, 1008)``, and the score of a feature set.

    Attributes:
        weight: float64 (1008, 2048), rows are classes.
        stem: the file's first convolution (32, 3, 3, 3), or None when the file holds the matrix alone.
        source: where the matrix came from (file and tensor name), for reports.
    """

    weight: torch.Tensor
    stem: torch.Tensor | None
    source: str

    def logits(self, features: np.ndarray | torch.Tensor) -> torch.Tensor:
        features = torch.as_tensor(features, dtype=torch.float64)
        if features.ndim != 2 or features.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"the Inception output layer takes pool features (N, {self.weight.shape[1]}), got "
                f"{tuple(features.shape)}: it applies to --features inception only"
            )
        return features @ self.weight.T  # (N, 1008), no bias (see the module docstring)

    def score(self, features: np.ndarray | torch.Tensor, splits: int = 10) -> dict:
        """``{"inception_score": mean, "inception_score_std": std, "inception_score_splits": splits}`` of the
        features in torch-fidelity's fixed shuffled order (see the module docstring)."""
        logits = self.logits(features)
        order = np.random.RandomState(SHUFFLE_SEED).permutation(len(logits))
        mean, std = inception_score(logits[torch.from_numpy(order)], splits=splits)
        return {"inception_score": mean, "inception_score_std": std, "inception_score_splits": splits}

    def check_network(self, network: nn.Module) -> None:
        """Refuse a layer that belongs to another network than ``network`` (the FID TorchScript in use)."""
        if self.stem is None:
            return
        stems = [tensor for tensor in network.state_dict().values() if tuple(tensor.shape) == STEM_SHAPE]
        if not stems:
            return  # a feature network without the usual first convolution: nothing to compare
        difference = float((stems[0].double().cpu() - self.stem).abs().max())
        if difference > STEM_TOLERANCE:
            raise ValueError(
                f"{self.source} belongs to another Inception network than the FID features (their first "
                f"convolutions differ by up to {difference:.3g}); give the output layer of the 2015 FID Inception "
                "(pt_inception-2015-12-05-6726825d.pth), or the feature network it belongs to (--inception)"
            )


def inception_score_of(classifier: InceptionClassifier | None, features: np.ndarray) -> dict:
    """The score fields for a report, or nothing when no output layer was given.

    10 chunks from 100 images on, one chunk below (a chunk of a few images scores near 1 whatever they show; the
    rule of the classifier score beside it). Below 50,000 images the score is biased low against published ones
    (``inception_score_warning``).
    """
    if classifier is None:
        return {}
    return classifier.score(features, splits=10 if len(features) >= 100 else 1)


def inception_score_warning(num_images: int) -> list[str]:
    """One line when an Inception Score from ``num_images`` is not comparable with published 50,000-image ones."""
    if num_images >= PUBLISHED_COUNT:
        return []
    return [
        f"the Inception Score of {num_images} images is biased low against published scores (50,000 images in "
        "chunks of 5,000); compare scores only at equal N"
    ]


def load_inception_classifier(path: str | os.PathLike) -> InceptionClassifier:
    """Read the 1008-class output layer from a local file (see the module docstring for the kinds taken).

    Raises:
        ValueError: naming the file and what it lacks, when it holds no (1008, 2048) matrix or several.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Inception output layer {path} not found (--inception-classifier)")
    # `evaluate` reads the file when it checks its flags and again when it scores: the second load (seconds for
    # NVIDIA's 100 MB TorchScript) reuses the first while the file's bytes are the same. Its hash decides, not its
    # modification time, whose clock ticks too coarsely to see a file rewritten at once.
    key = (str(path), path.resolve(), _file_digest(path))
    if _last_loaded and _last_loaded[0] == key:
        return _last_loaded[1]
    classifier = _load(path)
    _last_loaded[:] = [key, classifier]
    return classifier


_last_loaded: list = []  # [key, InceptionClassifier] of the file read last (one entry: one file per command)


def _file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (a tenth of a second for 100 MB, far less than loading them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load(path: Path) -> InceptionClassifier:
    tensors = _read_tensors(path)
    weight_name = _pick_weight(tensors, path)
    weight = tensors[weight_name].double()
    if tuple(weight.shape) == (FEATURE_DIM, NUM_CLASSES):
        weight = weight.T  # TensorFlow stores the matrix (in, out)
    stems = [tensor for tensor in tensors.values() if tuple(tensor.shape) == STEM_SHAPE]
    stem = stems[0].double() if len(stems) == 1 else None
    return InceptionClassifier(weight.contiguous(), stem, f"{path} [{weight_name}]")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """name -> tensor of a state dict, a TorchScript archive, a safetensors file or an .npz."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: torch.from_numpy(np.array(archive[name])) for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} could not be read as an .npz of arrays ({err})") from err
    if _is_torchscript(path):
        try:  # TorchScript holds code: like the FID network, load only files you trust
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as err:
            raise ValueError(f"{path} could not be read as a TorchScript network ({err})") from err
    state = load_weights_only(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {name: tensor for name, tensor in state.items() if isinstance(tensor, torch.Tensor)}


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (a plain ``torch.save`` zip has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _pick_weight(tensors: dict[str, torch.Tensor], path: Path) -> str:
    shapes = {(NUM_CLASSES, FEATURE_DIM), (FEATURE_DIM, NUM_CLASSES)}
    candidates = [name for name, tensor in tensors.items() if tuple(tensor.shape) in shapes]
    named = [name for name in candidates if name.endswith(PREFERRED_NAMES)]
    if len(candidates) == 1 or len(named) == 1:
        return named[0] if named else candidates[0]
    if not candidates:
        raise ValueError(
            f"{path} holds no ({NUM_CLASSES}, {FEATURE_DIM}) matrix, so no Inception output layer: give "
            "pytorch-fid's pt_inception-2015-12-05-6726825d.pth, torch-fidelity's weights file, NVIDIA's "
            "inception-2015-12-05.pt, or an .npz / .safetensors holding the matrix alone"
        )
    raise ValueError(f"{path} holds several ({NUM_CLASSES}, {FEATURE_DIM}) matrices ({', '.join(candidates)})")
