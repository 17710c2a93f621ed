"""Process-group set-up, rank-0 logging and error lines, model wrapping: the only module that reads RANK/WORLD_SIZE.

One process per device. ``torchrun`` (or any launcher) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; without them the process runs alone and nothing is initialised.
Models never see any of this: :func:`wrap_model` applies DDP / FSDP2 / ``torch.compile`` after the model
is built, and :func:`unwrap` gives back the plain module that checkpoints and exports save.

References: nanochat ``nanochat/common.py`` (``compute_init``, ``print0``), DiT ``train.py``
(``create_logger``), torchtitan ``models/llama3/parallelize.py`` (wrapping after construction).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import pickle
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

STRATEGIES = ("ddp", "fsdp", "none")
# How long a collective waits for the other processes before failing (PyTorch's own default is 30 minutes).
# It must outlast the longest stretch in which one rank works alone: rank 0 writing a checkpoint or previews.
DEFAULT_TIMEOUT_S = 600.0
# The longest timeout torch can represent (timedelta's range; gloo and NCCL hold it in milliseconds): about 31 years.
MAX_TIMEOUT_S = 1e9


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the number of processes, its rank on the node, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


def collective_timeout(timeout_s: float) -> datetime.timedelta:
    """``timeout_s`` (the --dist-timeout flag) as a timedelta; ValueError naming the flag for 0, a negative, NaN,
    infinite or out-of-range number of seconds (which would otherwise fail deep inside torch, or mean no timeout)."""
    if math.isfinite(timeout_s) and 0 < timeout_s <= MAX_TIMEOUT_S:
        return datetime.timedelta(seconds=timeout_s)
    raise ValueError(
        f"--dist-timeout must be a positive, finite number of seconds (default {DEFAULT_TIMEOUT_S:.0f}), "
        f"got {timeout_s}"
    )


def init_distributed(
    backend: str | None = None, device: str | torch.device | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> DistInfo:
    """Join the process group described by the launcher's environment (or run alone).

    A process whose peer dies sees its next collective fail at once (the connection drops) and ``torchrun``
    stops the others; a peer that hangs makes the collectives fail after ``timeout_s``, so no rank waits forever.

    Args:
        backend: "nccl", "gloo" or None (nccl when CUDA is available, gloo on CPU).
        device: force a device ("cpu", "cuda"); None picks ``cuda:LOCAL_RANK`` when CUDA is available.
        timeout_s: seconds a collective waits for the other processes before it fails.
    Returns:
        DistInfo of this process. Calling it again after initialisation returns the same information.
    """
    # checked in one process too: a flag that works alone must not fail only under torchrun
    timeout = collective_timeout(timeout_s)
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ValueError(f"WORLD_SIZE={world_size} but {name} is not set; launch with torchrun")
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=timeout)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def teardown(*, wait_for_peers: bool = False) -> None:
    """Leave the process group (safe to call when none exists).

    Args:
        wait_for_peers: first wait until every rank gets here (call it so after work that finished on every
            rank). All collectives are then complete before this process starts to exit; a failed rank
            makes the wait fail, which is logged, not raised (that rank reports its own error).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait_for_peers:
        try:
            dist.barrier()
        except RuntimeError as err:  # gloo and NCCL failures (DistError) included
            get_logger(__name__).warning("another process did not finish cleanly (%s)", err)
    dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[DistInfo]:
    """:func:`init_distributed` for the body, then :func:`teardown` (waiting for the peers when the body
    finished without an error)."""
    info = init_distributed(device=device, timeout_s=timeout_s)
    finished = False
    try:
        yield info
        finished = True
    finally:
        teardown(wait_for_peers=finished)


def launched_processes() -> int:
    """How many processes the launcher started (WORLD_SIZE; 1 without torchrun), before any group exists."""
    return _env_int("WORLD_SIZE", 1)


def launch_rank() -> int:
    """This process's rank as the launcher numbered it (RANK; 0 alone), also before the process group exists and
    after it is gone. An unreadable RANK counts as 0 here: it is the error being reported (init_distributed's)."""
    try:
        return _env_int("RANK", 0)
    except ValueError:
        return 0


# The error line rank 0 printed, in torchrun's own key-value store: its agent's, at MASTER_ADDR:MASTER_PORT, which
# exists before the process group and outlives it. Under another launcher that store belongs to the group (rank 0
# hosts it), so there is none to share, and every rank reports on its own.
_ERROR_KEY = "line"


def _launcher_store(connect_timeout_s: float) -> dist.Store | None:
    if not dist.is_available() or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    try:
        host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
        store = dist.TCPStore(host, port, is_master=False, timeout=datetime.timedelta(seconds=connect_timeout_s))
    except (KeyError, ValueError, RuntimeError):  # no address, or the agent is gone: the job is ending
        return None
    # a job that torchrun restarts (--max-restarts) must not read the line of an earlier attempt
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"nextscale/error/attempt_{attempt}", store)


def announce_error(line: str) -> None:
    """On rank 0 of a torchrun job: tell the other ranks which error line it printed (see :func:`rank_zero_error`).
    Does nothing outside torchrun; never raises."""
    store = _launcher_store(connect_timeout_s=5.0)
    if store is not None:
        with contextlib.suppress(RuntimeError):  # the others then print their own line
            store.set(_ERROR_KEY, line)


def rank_zero_error(timeout_s: float) -> str | None:
    """On another rank of a torchrun job: the error line rank 0 printed (:func:`announce_error`), waiting for it up to
    ``timeout_s``; None when rank 0 announced none by then, or outside torchrun. Never raises."""
    store = _launcher_store(connect_timeout_s=min(timeout_s, 5.0))
    if store is None:
        return None
    deadline = time.monotonic() + timeout_s
    try:
        # Polled: a store.wait that times out writes socket warnings to stderr, beside the line this rank then prints.
        while not store.check([_ERROR_KEY]):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
        return store.get(_ERROR_KEY).decode(errors="replace")
    except RuntimeError:
        return None


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process). Before the process group exists (a command parsing its flags and
    reading its data under torchrun) the launcher's RANK decides, so that those lines, too, are printed once."""
    if get_rank() != 0:
        return False
    if dist.is_available() and dist.is_initialized():
        return True
    return os.environ.get("RANK", "0").strip() in ("", "0")  # an unreadable RANK fails in init_distributed, not here


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def _wait_until_released(tensor: torch.Tensor, references: int, timeout_s: float = 5.0) -> None:
    """Return once gloo's worker thread has dropped its reference to ``tensor`` (which held ``references``
    before the collective).

    The worker drops a collective's tensors just after the caller learns that it finished (in about one call
    in five on two CPU ranks). Dropping a tensor that Python has seen takes the GIL, and if the interpreter
    is already shutting down the thread is killed inside a C++ destructor and the process aborts
    ("terminate called without an active exception"): a run that finished would exit with SIGABRT. DDP
    keeps the group's worker threads alive past ``destroy_process_group`` (PyTorch 2.13), so the release
    must happen here, while Python runs. It takes microseconds; NCCL work holds its tensors differently.
    """
    if tensor.device.type != "cpu" or dist.get_backend() != "gloo":
        return
    deadline = time.monotonic() + timeout_s
    while tensor._use_count() > references and time.monotonic() < deadline:
        time.sleep(1e-4)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (a new tensor; the input is untouched)."""
    out = tensor.detach().clone()
    if get_world_size() > 1:
        references = out._use_count()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        _wait_until_released(out, references)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over ranks (a new float tensor)."""
    return all_reduce_sum(tensor.float()) / get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    world_size = get_world_size()
    if world_size == 1:
        return [obj]
    if dist.get_backend() != "gloo":
        out: list[Any] = [None] * world_size
        dist.all_gather_object(out, obj)  # places its tensors on the backend's device
        return out
    # On gloo, with tensors of our own, so that every one is released before this returns (_wait_until_released).
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).clone()  # storage owned by torch
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(world_size)]
    _all_gather(sizes, torch.tensor([payload.numel()]))
    longest = int(max(size.item() for size in sizes))
    padded = torch.cat([payload, payload.new_zeros(longest - payload.numel())])
    gathered = [torch.empty(longest, dtype=torch.uint8) for _ in range(world_size)]
    _all_gather(gathered, padded)
    return [pickle.loads(data[: int(size.item())].numpy().tobytes()) for data, size in zip(gathered, sizes)]


def gather_global_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's (b, ...) part of a global batch, in the global batch's order: the sampler (``data.samplers``)
    gives rank r positions r, r + W, ... of each global batch, so row i of rank r goes to row i * W + r. All
    ranks hold equal parts; one process returns ``tensor`` itself."""
    world_size = get_world_size()
    if world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    _all_gather(parts, tensor.contiguous())
    return torch.stack(parts, dim=1).flatten(0, 1)  # (b, W, ...) -> (b * W, ...)


def _all_gather(outputs: list[torch.Tensor], tensor: torch.Tensor) -> None:
    references = [t._use_count() for t in (tensor, *outputs)]
    dist.all_gather(outputs, tensor)
    for t, count in zip((tensor, *outputs), references):
        _wait_until_released(t, count)


def broadcast_tensor(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s values."""
    if get_world_size() > 1:
        references = tensor._use_count()
        dist.broadcast(tensor, src=src)
        _wait_until_released(tensor, references)
    return tensor


class _RankZeroLogger(logging.LoggerAdapter):
    """Drops every record on ranks other than 0, so N processes print one log."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging API name)
        return is_main() and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str) -> logging.LoggerAdapter:
    """A logger that emits on rank 0 only; handlers and levels are configured by the CLI's ``main``."""
    return _RankZeroLogger(logging.getLogger(name), {})


def wrap_model(
    model: nn.Module, strategy: str = "ddp", compile: bool = False, device: torch.device | None = None
) -> nn.Module:
    """Apply data parallelism and compilation to a constructed model (never inside model code).

    Args:
        model: the plain module, already on its device.
        strategy: "ddp" (DistributedDataParallel; a no-op in a single process), "fsdp" (FSDP2
            ``fully_shard`` on every transformer block, then the root) or "none".
        compile: wrap the result in ``torch.compile``.
        device: the process's device (DDP's device_ids on CUDA).
    Returns:
        The wrapped module; :func:`unwrap` returns the original.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    trainable = any(p.requires_grad for p in model.parameters())
    if get_world_size() > 1 and trainable:
        if strategy == "ddp":
            device_ids = [device.index] if device is not None and device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        elif strategy == "fsdp":
            try:
                from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
            except ImportError as err:
                raise ValueError("strategy 'fsdp' needs torch >= 2.6 (FSDP2 fully_shard); use 'ddp'") from err
            for block in getattr(model, "blocks", []):
                # parts a model calls outside forward (STAR's text projections) are units of their own, whose
                # named methods gather their weights as forward does
                for part in [part for part in block.modules() if getattr(part, "FSDP_FORWARD_METHODS", ())]:
                    fully_shard(part)
                    for method in part.FSDP_FORWARD_METHODS:
                        register_fsdp_forward_method(part, method)
                fully_shard(block)
            fully_shard(model)
            quiet_fsdp_view_warning()
    if compile:
        model = torch.compile(model)
    return model


def quiet_fsdp_view_warning() -> None:
    """Silence FSDP2's warning that a wrapped module returned a view tensor, printed on every rank at the first
    backward (the logits are a view of the head's output). It warns that an in-place op on such an output would skip
    the all-gather; the trainers only ever read the logits (cross-entropy, argmax), so the gradients are right and
    the warning would only alarm. Every other warning stays."""
    warnings.filterwarnings(
        "ignore", message=r"FSDP2-wrapped module \(.*\) returned a view tensor", category=UserWarning
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` and DDP wrappers (FSDP2 shards in place: same module)."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def full_state_dict(model: nn.Module, keep: bool = True) -> dict[str, torch.Tensor]:
    """The complete, unsharded CPU state dict of a (possibly wrapped or sharded) model.

    Call it on every rank (under FSDP it gathers the shards, a collective), but use the result on rank 0 only:
    a sharded model's complete tensors arrive on rank 0, and the other ranks get an empty dict (torch's
    ``get_model_state_dict`` with ``cpu_offload=True``). An unsharded model gives its full state on every rank.

    Args:
        model: the plain, DDP-wrapped, compiled or FSDP-sharded module.
        keep: False on a rank that discards the result: an unsharded model (DDP, one process) then returns an
            empty dict at once instead of copying every weight to the CPU; a sharded model still takes part in
            the gather, which needs every rank.
    """
    plain = unwrap(model)
    if _is_sharded(plain):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(plain, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not keep:
        return {}
    return {name: tensor.detach().cpu() for name, tensor in plain.state_dict().items()}


def _is_sharded(model: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in unwrap(model).parameters())


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a complete state dict (as written by :func:`full_state_dict`) into a plain or sharded model."""
    plain = unwrap(model)
    if _is_sharded(plain):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(plain, state, options=StateDictOptions(full_state_dict=True))
    else:
        plain.load_state_dict(state, strict=True)


def optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's complete state; like :func:`full_state_dict`, call it on every rank and use it on rank 0
    only (under FSDP the gathered state arrives on rank 0, the other ranks get an empty dict)."""
    if _is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(unwrap(model), optimizer, options=options)
    return optimizer.state_dict()


def load_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    if _is_sharded(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True)
        if any(isinstance(key, int) for key in state.get("state", {})):
            # DDP and single-process checkpoints key the moments by position, FSDP's loader reads them by name
            raise ValueError(
                "this run's checkpoints were written without FSDP (--strategy ddp or one process); resume it with "
                "--strategy ddp, or start a new run from its weights with --init-from (fresh optimizer)"
            )
        set_optimizer_state_dict(unwrap(model), optimizer, state, options=options)
    else:
        optimizer.load_state_dict(state)


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """Context that skips DDP's gradient all-reduce (gradient accumulation micro-steps); a null context otherwise."""
    plain = model._orig_mod if hasattr(model, "_orig_mod") else model
    if isinstance(plain, nn.parallel.DistributedDataParallel):
        return plain.no_sync()
    return contextlib.nullcontext()
