"""Component folders: ``config.json`` + ``model.safetensors``, atomic file writes, and staging folders for swaps.

Every model component (tokenizer, transformer, ...) holds a frozen dataclass ``config`` and is rebuilt
from it. A component folder stores that config beside the weights, so loading never guesses sizes.

References: diffusers ``ModelMixin.save_pretrained`` / ``from_pretrained`` (folder layout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import json
import logging
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:  # Windows: staging folders are not locked, and no leftover is ever taken for stale
    fcntl = None

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# ``bundled:NAME`` -> the folder under the installed package's ``assets/`` that holds that pipeline.
BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = {"fashion-mnist": "demo", "scenes": "scenes"}
PICKLE_OPCODES = frozenset(ord(opcode.code) for opcode in pickletools.opcodes)

T = TypeVar("T")
# The staging folder where swap_entries keeps the entries it replaces (see staging_folder).
REPLACED_STAGING = ".replaced-*"
log = logging.getLogger(__name__)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename.

    A crash mid-write leaves the old file (or none), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself survives a power loss only once the folder is synced
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk (POSIX); file systems that cannot (some network or Windows ones) are left."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # EINVAL on file systems without directory fsync: the rename stands, only its durability is weaker
    finally:
        os.close(descriptor)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def swap_entries(staging: Path, target: Path, entries: Sequence[str]) -> None:
    """Replace the ``entries`` of the folder ``target`` by those of ``staging`` (on the same file system).

    ``entries[0]`` is the file that makes the folder loadable (``pipeline.json``): it moves out first and in last,
    so a crash in between leaves a folder that says it is not a pipeline, never a loadable mix of old and new
    components. A swap stopped halfway (an interrupt, an I/O error) puts the old entries back; entries of
    ``target`` that are not in ``entries`` stay. The old entries wait in a ``.replaced-*`` staging folder, which
    a killed swap leaves for the next write into ``target`` to remove (:func:`remove_stale_staging`).
    """
    with staging_folder(target, REPLACED_STAGING) as old:
        try:
            for name in entries:
                if (target / name).exists() or (target / name).is_symlink():
                    os.replace(target / name, old / name)
            for name in [*entries[1:], entries[0]]:
                if (staging / name).exists():
                    os.replace(staging / name, target / name)
        except BaseException:
            for entry in old.iterdir():  # the old pipeline, whole again, over the new entries already moved in
                moved_in = target / entry.name
                if moved_in.is_dir() and not moved_in.is_symlink():
                    shutil.rmtree(moved_in)
                elif moved_in.exists() or moved_in.is_symlink():
                    moved_in.unlink()
                os.replace(entry, moved_in)
            raise


@contextlib.contextmanager
def staging_folder(home: Path, pattern: str) -> Iterator[Path]:
    """A new hidden folder in ``home`` to write into, locked while the body runs and removed after it.

    ``pattern`` names it, with ``*`` standing for this process's id and a random part: ``".saving-*"`` gives
    ``.saving-4242-k3j9x1ab``. The folder is held with ``flock`` (the kernel drops the lock when its holder exits,
    even by SIGKILL), so that :func:`remove_stale_staging` can tell a folder whose writer was killed from one that
    a live process still writes. A body that moves the folder away (renames it into place) keeps it.
    """
    prefix, suffix = pattern.split("*")
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix, dir=home))
    descriptor = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    try:
        if descriptor is not None:
            with contextlib.suppress(OSError):  # a file system without locks: the folder is never taken for stale
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield folder
    finally:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        if descriptor is not None:
            os.close(descriptor)  # releases the lock, once the folder is gone


def stale_staging(home: Path, patterns: Sequence[str]) -> list[Path]:
    """The folders in ``home`` that :func:`staging_folder` made with one of ``patterns`` and whose writer is gone.

    A folder counts as stale only when both tests say so: the process id in its name runs no process here, and
    its lock can be taken (no live process holds it, whatever machine or PID namespace it runs in). Where either
    cannot be told (no ``flock``, a file system that refuses it), the folder is left alone.
    """
    if fcntl is None or not home.is_dir():
        return []
    names = [
        re.compile(re.escape(prefix) + r"(\d+)-\w+" + re.escape(suffix))
        for prefix, suffix in (pattern.split("*") for pattern in patterns)
    ]
    stale = []
    for entry in sorted(home.iterdir()):
        found = next((match for name in names if (match := name.fullmatch(entry.name))), None)
        if found is None or entry.is_symlink() or not entry.is_dir() or _process_alive(int(found.group(1))):
            continue
        try:
            descriptor = os.open(entry, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            stale.append(entry)
        except OSError:  # held by a live writer, or locks unsupported here
            pass
        finally:
            os.close(descriptor)
    return stale


def remove_stale_staging(home: Path, patterns: Sequence[str]) -> None:
    """Delete the :func:`stale_staging` folders in ``home`` (left by killed writes: each may hold a whole model's
    weights), saying so in one logged line."""
    stale = stale_staging(home, patterns)
    for entry in stale:
        shutil.rmtree(entry, ignore_errors=True)
    removed = [entry for entry in stale if not entry.exists()]
    if removed:
        log.warning(
            "removed %s left in %s by earlier writes that were killed: %s",
            "a staging folder" if len(removed) == 1 else f"{len(removed)} staging folders",
            home,
            ", ".join(entry.name for entry in removed),
        )


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` names a running process here (one of another user counts; signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def bundled_model_path(name: str) -> Path:
    """The folder of a model shipped inside the installed package (``bundled:fashion-mnist``, ``bundled:scenes``).

    Found through ``importlib.resources``, so it works from any working directory and from a wheel install.
    """
    name = name.removeprefix(BUNDLED_PREFIX)
    if name not in BUNDLED_MODELS:
        available = ", ".join(BUNDLED_PREFIX + known for known in BUNDLED_MODELS)
        raise FileNotFoundError(f"unknown bundled model {name!r}; available: {available}")
    return Path(str(importlib.resources.files("nextscale").joinpath("assets", BUNDLED_MODELS[name])))


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A local folder as given, or the package folder that ``bundled:NAME`` names."""
    text = os.fspath(path)
    return bundled_model_path(text) if text.startswith(BUNDLED_PREFIX) else Path(text)


def looks_like_torch_save(path: str | os.PathLike) -> bool:
    """Whether a file starts like ``torch.save`` output: a zip archive, or a pickle (the legacy format).

    Only the first bytes are read, so a text file, an image or an empty file is told apart from a checkpoint
    whose contents the weights-only unpickler refuses (those start like a real one).
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
    # zip: local file header "PK\x03\x04"; pickle protocol 2+: the PROTO opcode 0x80 and the protocol number
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def written_by_pickle_dump(path: str | os.PathLike) -> bool:
    """Whether a file that starts like a pickle is a plain ``pickle.dump`` rather than legacy ``torch.save`` output.

    Legacy ``torch.save`` writes a first small pickle holding only torch's magic number; a plain pickle starts with
    its object instead. The opcodes are only parsed (``pickletools.genops`` runs nothing), and only the first few;
    bytes that are not opcodes at all are damaged data, not a pickle (False, left to the caller's other checks).
    """
    with open(path, "rb") as handle:
        if handle.read(1) != b"\x80":  # a zip archive (torch.save's format since 1.6), or no pickle of protocol 2+
            return False
        handle.seek(0)
        try:
            for count, (opcode, argument, _) in enumerate(pickletools.genops(handle)):
                if opcode.name in ("PROTO", "FRAME"):
                    continue
                if opcode.name == "LONG1" and argument == torch.serialization.MAGIC_NUMBER:
                    return False
                if opcode.name == "STOP" or count >= 16:
                    return True
        except ValueError:
            return False
    return False


def looks_like_safetensors(path: str | os.PathLike) -> bool:
    """Whether a file starts like a safetensors file: an 8-byte little-endian header length, then a JSON object."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) < 9:
        return False
    header_length = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and header_length <= path.stat().st_size - 8


def load_weights_only(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors and no code from the file run.

    A ``.safetensors`` file (told by its header, whatever its name) is read with safetensors instead and gives
    its name -> tensor dict. A file that the weights-only unpickler refuses (pickled classes or functions:
    possibly code that would run on load) is not loaded at all; the error says how to get a plain state dict
    instead. A plain ``pickle.dump`` file (which torch.load cannot read either) is named as such, and a file that
    is none of these (text, an image, an empty file) too, not blamed on pickling.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the checkpoint file itself (a .pth or .pt file)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if looks_like_safetensors(path):
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{path} could not be read as a safetensors file ({err}); the file is corrupt or truncated: "
                "check the path, or fetch the file again"
            ) from err
    kind = "safetensors file" if path.suffix == ".safetensors" else "PyTorch checkpoint"
    not_a_checkpoint = (
        f"{path} is not a {kind} (corrupt, truncated, or another kind of file); check the path, or fetch the file again"
    )
    if not looks_like_torch_save(path):
        raise ValueError(not_a_checkpoint)
    if written_by_pickle_dump(path):  # torch.load refuses it anyway; the pickle is not to blame for running code
        raise ValueError(
            f"{path} was written with pickle.dump: it is not a PyTorch or safetensors checkpoint; where it was made, "
            "re-save the weights with torch.save(state_dict, path) or safetensors.torch.save_file(state_dict, path)"
        )
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol N" warnings would clutter the one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message: advice on weights_only=False (not taken here), then "WeightsUnpickler error: REASON"
        _, _, after = str(err).partition("WeightsUnpickler error:")
        reasons = [line.strip() for line in after.splitlines() if line.strip()]
        operand = re.fullmatch(r"Unsupported operand (\d+)", reasons[0]) if reasons else None
        if operand and int(operand.group(1)) not in PICKLE_OPCODES:  # a byte no pickler writes: damaged data
            raise ValueError(not_a_checkpoint) from err
        reason = f" ({reasons[0].split('. Please')[0].rstrip('.')})" if reasons else ""
        raise ValueError(
            f"{path} is not a plain state dict / weights-only checkpoint{reason} and will not be loaded, since "
            "unpickling it could run code; save a state dict (torch.save(model.state_dict(), path)) or convert "
            "from a trusted source"
        ) from err
    except Exception as err:  # zip, EOF, OS and key errors all mean the same here
        first = (str(err).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint ({type(err).__name__}: {first}); the file is "
            "corrupt or truncated: check the path, or fetch the file again"
        ) from err


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(config_cls: type[T], values: dict[str, Any]) -> T:
    """Rebuild a frozen dataclass config from JSON values (lists become tuples where the field is a tuple)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"{config_cls.__name__} has no field(s) {unknown}; the config.json was written by another "
            "version or belongs to another component"
        )
    hints = typing.get_type_hints(config_cls)
    kwargs = {name: _coerce(hints[name], value) for name, value in values.items()}
    for name, value in kwargs.items():
        if not _fits(hints[name], value):
            raise TypeError(
                f"{config_cls.__name__}.{name} must be {_type_name(hints[name])}, got {value!r}; the config.json "
                "is corrupt or was edited by hand"
            )
    return config_cls(**kwargs)


def _fits(annotation: Any, value: Any) -> bool:
    """Whether a value read from JSON can be the annotated field type (ints are accepted for floats)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(value is None if arg is type(None) else _fits(arg, value) for arg in typing.get_args(annotation))
    if origin is tuple or annotation is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(annotation)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(args[0], item) for item in value)
        return len(args) == len(value) and all(_fits(arg, item) for arg, item in zip(args, value))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, annotation)
    return True  # dicts, literals and other rare annotations are left to the config's own checks


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _coerce(annotation: Any, value: Any) -> Any:
    """JSON has no tuples; turn lists back into tuples where the annotation asks for one."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None) and value is None:
                return None
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _coerce(arg, value)
    if (origin is tuple or annotation is tuple) and isinstance(value, list):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return config_from_dict(annotation, value)
    return value


def save_component(module: torch.nn.Module, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    """Write ``module.config`` and its weights to ``directory`` (created if needed).

    Args:
        module: a component with a dataclass ``config`` attribute.
        directory: the component folder.
        dtype: optional storage dtype for floating tensors (e.g. torch.float16 to halve the size).
    """
    config = getattr(module, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"{type(module).__name__} has no dataclass `config`; only components can be saved")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype such as torch.float16 (or None), got {dtype!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous().clone()  # safetensors refuses shared storage
    payload = {"class": type(module).__name__, "config": config_to_dict(config)}

    def write_pair(config_tmp: str) -> None:
        # Both files are written before either is renamed into place: a failed write (a full disk) replaces neither,
        # so a folder written over never pairs the new weights with the old config.json.
        Path(config_tmp).write_text(json.dumps(payload, indent=2) + "\n")
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))

    atomic_write(directory / CONFIG_NAME, write_pair)


def read_json_file(path: str | os.PathLike, missing: str) -> dict[str, Any]:
    """Read a folder's JSON index; a missing file says ``missing`` (what the folder should hold), a broken one
    is called corrupt. Both are one-line errors, never a JSON traceback."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {missing}")
    try:
        payload = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the folder is corrupt") from err
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a JSON {type(payload).__name__}, not an object; the folder is corrupt")
    return payload


def read_config(component_cls: type, directory: str | os.PathLike) -> Any:
    directory = Path(directory)
    payload = read_json_file(
        directory / CONFIG_NAME,
        f"{directory} is not a component folder (expected {CONFIG_NAME} and {WEIGHTS_NAME})",
    )
    expected = component_cls.__name__
    if payload.get("class") != expected:
        raise ValueError(f"{directory} holds a {payload.get('class')!r}, not a {expected!r}")
    if not isinstance(payload.get("config"), dict):  # a KeyError, or a list read as field names, said nothing useful
        raise ValueError(
            f'{directory / CONFIG_NAME} has no "config" object (got {payload.get("config")!r}); the component '
            "folder is corrupt: export or fetch it again"
        )
    return config_from_dict(component_cls.config_class, payload["config"])


def usable_device(device: str | torch.device, flag: str = "device") -> torch.device:
    """``device`` as a torch.device nextscale can run on here, or a one-line ValueError naming ``flag`` (the
    argument or command-line flag it came from) and the fix."""
    cpu = f"{flag} cpu" if flag.startswith("--") else f"{flag}='cpu'"
    try:
        checked = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"{flag} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from err
    if checked.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{flag} {device}: CUDA is not available on this machine (use {cpu})")
    if checked.type == "cuda" and checked.index is not None and checked.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"{flag} {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if checked.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{flag} {device}: Apple's MPS is not available on this machine (use {cpu})")
    if checked.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{flag} {device}: nextscale runs on cpu, cuda or mps")
    return checked


@contextlib.contextmanager
def float32_default_dtype():
    """torch's default dtype set to float32 inside (components are float32 modules), the caller's restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _dtype_kind(tensor: torch.Tensor) -> str:
    """Floating, complex, bool or integer: the storage dtype may differ within a kind (float16 for float32)."""
    if tensor.dtype == torch.bool:
        return "bool"
    return "float" if tensor.is_floating_point() else "complex" if tensor.is_complex() else "integer"


def _defaulted_fields_note(component_cls: type, directory: Path) -> str:
    """For a weights mismatch: the config fields that config.json lacks (their defaults were used), if any."""
    payload = read_json_file(directory / CONFIG_NAME, "")
    absent = sorted({f.name for f in dataclasses.fields(component_cls.config_class)} - set(payload["config"]))
    return f" (config.json has no {', '.join(absent)}: their defaults were used)" if absent else ""


def load_component(component_cls: type[T], directory: str | os.PathLike, device: str | torch.device = "cpu") -> T:
    """Rebuild a component from its folder; weights must match the config exactly (strict)."""
    directory = Path(directory)
    config = read_config(component_cls, directory)
    with float32_default_dtype():  # built as under the usual default, whatever the caller set (float64 in a notebook)
        module = component_cls(config)
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} not found; the component folder is incomplete")
    try:
        state = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights_path} could not be read ({err}); the file is corrupt or truncated") from err
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{weights_path} does not fit {component_cls.__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            + _defaulted_fields_note(component_cls, directory)
        )
    for name, tensor in state.items():
        if tensor.shape != own[name].shape:
            raise ValueError(
                f"{weights_path}: {name} has shape {tuple(tensor.shape)}, the config expects {tuple(own[name].shape)}"
                + _defaulted_fields_note(component_cls, directory)
            )
        if _dtype_kind(tensor) != _dtype_kind(own[name]):
            # A float stored for an integer buffer (or the reverse) would be rounded or reinterpreted silently.
            raise ValueError(
                f"{weights_path}: {name} is stored as {tensor.dtype}, but the model holds {own[name].dtype}; the file "
                "was not written by save_component for this component: export or fetch it again"
            )
        state[name] = tensor.to(own[name].dtype)
    # NaN or infinity in the weights (a diverged export, a damaged file) makes black images or a crash deep in
    # sampling; one pass over the weights finds them at load time instead
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"{weights_path} holds non-finite weights (NaN or inf in {shown}): the model it was exported from had "
            "diverged, or the file is damaged; export or fetch it again"
        )
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()
