"""The one training loop: subclasses define a step, the base owns everything around it.

``Trainer`` runs optimizer steps made of ``grad_accum`` micro-batches (DDP gradient sync only on the
last), under autocast (bf16, or fp16 with a GradScaler), with gradient clipping, the per-step LR and
weight-decay schedule, an EMA of the weights, JSONL (and TensorBoard when installed) metrics, periodic
held-out evaluation, preview images and checkpoints. A run lives in one directory::

    run_dir/config.json          what made the run, written when training starts (a different config
                                 refuses to resume here once a checkpoint exists)
    run_dir/checkpoints/         step-XXXXXXXX.pt, the newest ``keep_checkpoints`` kept
    run_dir/metrics.jsonl        one JSON object per logged step: {"step", "split", metrics...}
    run_dir/previews/            PNG grids written by the subclass's ``preview``
    run_dir/tensorboard/         event files, only if ``torch.utils.tensorboard`` imports

Re-running with the same run_dir resumes model, EMA, optimizers, GradScaler, step, every rank's RNG
state and the data position exactly: the next steps equal those of an uninterrupted run. Ctrl-C (or SIGTERM)
finishes the current step, checkpoints it and raises ``TrainingInterrupted``, so re-running resumes there.

Subclasses implement ``train_step(batch) -> {"loss": scalar tensor, other metrics...}`` and optionally
``eval_step(batch, model)`` (per-sample metrics of the given weights, averaged over the held-out set and all ranks)
and ``preview(step)``. Metric tensors of shape (K,) are logged per scale as ``name/scale{k}``; a NaN entry means the
step has no value for that scale (``metrics.metric_mean``).

The pieces around the loop live beside it: ``batches`` (the data streams), ``precision`` (autocast, GradScaler,
the non-finite check), ``run_dir`` (config.json), ``held_out_watch``, ``checkpoint`` and ``metrics``.

References: minGPT ``mingpt/trainer.py``, torchtitan ``trainer.py``, DiT ``train.py``.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from nextscale import distributed
from nextscale.data.samplers import ResumableDistributedSampler
from nextscale.training import checkpoint as ckpt
from nextscale.training.batches import eval_batches, micro_batch_size, train_batches
from nextscale.training.config import TrainConfig, normalise_config, seed_everything
from nextscale.training.ema import EMA
from nextscale.training.failures import (
    CheckpointWriteError,
    NonFiniteLoss,
    PeerLost,
    RunWriteError,
    is_collective_failure,
)
from nextscale.training.held_out_watch import HeldOutWatch
from nextscale.training.interrupt import StopRequest, TrainingInterrupted
from nextscale.training.metrics import (
    MetricsLog,
    format_metrics,
    merge_rank_windows,
    metric_mean,
    reduce_over_ranks,
)
from nextscale.training.optim import apply_schedule, build_adamw
from nextscale.training.precision import autocast_context, grad_scaler, non_finite, resolve_precision
from nextscale.training.run_dir import check_run_dir, refuse_another_config, write_run_config

log = distributed.get_logger(__name__)


class Trainer(abc.ABC):
    """Base trainer; see the module docstring.

    Construction seeds every RNG of the process with ``seed * world_size + rank`` (dropout and label
    dropout differ per rank) and resumes from the run directory's newest readable checkpoint (rank 0 picks it,
    every rank loads that file).

    Held-out metrics (every ``eval_every`` steps) score two sets of weights when the run keeps an EMA: the raw
    weights being trained, logged as split "eval" (what every run logs, with or without an EMA, so that runs and
    scaling sweeps compare on it), and the EMA weights that ``export`` writes and users sample from, logged as
    split "eval_ema" with the same metric names. The EMA lags the raw weights (it averages about the last ninth of
    the steps while its warm-up lasts, then the last ``1 / (1 - decay)``), so the two differ most while the loss
    falls fast. Scoring both doubles the held-out forwards, a small cost next to the training steps between two
    evaluations. The held-out watch (the one warning that the model memorises) follows the exported weights: the
    EMA's loss, else the raw one's.

    Args:
        modules: the trainable modules by name, "model" first (the one EMA'd and exported); plain,
            already built and seeded identically on every rank.
        config: optimisation and bookkeeping.
        run_dir: the run directory (created; resumed from if it holds checkpoints).
        train_dataset: map-style dataset of samples that ``default_collate`` batches.
        eval_dataset: optional held-out dataset for ``eval_step``.
        run_config: everything that defines the run (model configs, data, ...), stored as config.json and
            compared on resume.
        dist_info: this process's place (default: ``distributed.init_distributed()``).
    """

    # Whether an optimizer step depends only on which samples it trains on, not on how they are cut into
    # micro-batches (per-micro-batch statistics, such as a tokenizer's codebook usage, make it depend): then a
    # resume may change --grad-accum at the same batch size, e.g. to go on with fewer processes.
    regroups_micro_batches: bool = False
    # The metric the progress bar shows: the objective a user follows (a tokenizer's leaves out its discriminator's).
    progress_metric: str = "loss"

    def __init__(
        self,
        modules: dict[str, nn.Module],
        config: TrainConfig,
        run_dir: str | os.PathLike,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        run_config: dict[str, Any] | None = None,
        dist_info: distributed.DistInfo | None = None,
    ) -> None:
        if "model" not in modules:
            raise ValueError("modules must contain the main module under the name 'model'")
        self.config = config
        self.dist = dist_info or distributed.init_distributed()
        check_parallelism(config, self.dist.world_size)
        self.device = self.dist.device
        self.run_dir = Path(run_dir)
        self.run_config = normalise_config({"train": dataclasses.asdict(config), **(run_config or {})})
        check_run_dir(self.run_dir, self.run_config, config.total_steps)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        eval_size = len(eval_dataset) if eval_dataset is not None else None
        self.micro_batch = micro_batch_size(config, self.dist.world_size, len(train_dataset), eval_size)
        self.precision = resolve_precision(config.precision, self.device)

        self.modules = {name: module.to(self.device) for name, module in modules.items()}
        self.ema = EMA(self.modules["model"], config.ema_decay) if config.ema_decay is not None else None
        self.wrapped = {
            name: distributed.wrap_model(module, config.strategy, config.compile, self.device)
            for name, module in self.modules.items()
        }
        self.model, self.raw_model = self.wrapped["model"], self.modules["model"]
        self.optimizers = self.build_optimizers()
        self.scaler = grad_scaler(self.precision, self.device)
        self.sampler = ResumableDistributedSampler(
            len(train_dataset), self.micro_batch, self.dist.rank, self.dist.world_size, shuffle=True, seed=config.seed
        )
        self.step = 0
        # this rank's step metrics since the last metrics line; checkpointed, so that the first line after a resume
        # averages the same steps as in an uninterrupted run (also on another number of processes: _resume)
        self.metrics_window: dict[str, list[torch.Tensor]] = {}
        self.held_out_watch = HeldOutWatch(of_ema=self.ema is not None)  # the weights export writes
        self._saved_step: int | None = None  # step of the newest checkpoint this run holds
        seed_everything(config.seed * max(self.dist.world_size, 1) + self.dist.rank)
        self.metrics_log = MetricsLog(self.run_dir, self.dist.is_main)
        self._resume()

    # ------------------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def train_step(self, batch: Any) -> dict[str, Any]:
        """One micro-batch forward: return {"loss": scalar tensor to backpropagate, other metrics...}."""

    def eval_step(self, batch: Any, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """Held-out metrics per sample of ``model``: tensors (B,) or (B, K); None (default) means no evaluation.

        ``model`` is the weights to score, in eval mode: the wrapped raw model (``self.model``) or the EMA's plain
        copy (``self.ema.module``); the step must run it, never ``self.model``."""
        return None

    def preview(self, step: int) -> None:
        """Write preview images (rank 0 only, RNG-isolated); default: nothing."""
        return None

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One AdamW per trainable module (override for different settings per module)."""
        cfg = self.config
        return {
            name: build_adamw(distributed.unwrap(module), cfg.peak_lr, cfg.betas, cfg.eps)
            for name, module in self.wrapped.items()
            if any(p.requires_grad for p in module.parameters())
        }

    def extra_state(self) -> dict[str, Any]:
        """Additional plain state to checkpoint (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`extra_state`."""
        return None

    # ----------------------------------------------------------------------------------- run set-up
    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast of the run's precision, for ``train_step`` and ``eval_step`` (none under fp32)."""
        return autocast_context(self.precision, self.device)

    # ---------------------------------------------------------------------------------- the loop
    def fit(self, max_steps: int | None = None) -> dict[str, float]:
        """Train until ``config.total_steps`` (or until step ``max_steps`` in this call); returns the last metrics.

        Raises:
            TrainingInterrupted: on SIGINT/SIGTERM, after checkpointing the last finished step.
            NonFiniteLoss: the loss or gradient norm became NaN/inf (nothing of that step applied or saved).
            CheckpointWriteError: a checkpoint could not be written (the previous one is intact).
            RunWriteError: another file of the run could not be written (disk full, permissions).
            PeerLost: another process of a distributed run died or a collective timed out.
        """
        cfg = self.config
        stop = cfg.total_steps if max_steps is None else min(max_steps, cfg.total_steps)
        bar = None
        if cfg.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=stop, initial=self.step, desc=type(self).__name__, dynamic_ncols=True)
        try:
            write_run_config(self.run_dir, self.run_config, self.dist.is_main)
            batches = train_batches(self.train_dataset, self.sampler, self.step * cfg.grad_accum, cfg, self.device)
            with StopRequest() as stop_request:
                return self._fit_steps(stop, batches, bar, stop_request)
        except CheckpointWriteError:
            raise
        except OSError as err:  # metrics or previews on a full disk, a vanished file: say what is safe to resume
            raise RunWriteError(err, self.step + 1, self.run_dir, self._saved_step) from err
        except RuntimeError as err:
            if self.dist.is_distributed and is_collective_failure(err):
                raise PeerLost(err, self.step + 1, self.run_dir, self._saved_step) from err
            raise
        finally:
            if bar is not None:
                bar.close()

    def _fit_steps(self, stop: int, batches, bar, stop_request: StopRequest) -> dict[str, float]:
        cfg = self.config
        window = self.metrics_window
        last: dict[str, float] = {}
        started, samples = time.perf_counter(), 0
        while self.step < stop:
            if self._stop_requested(stop_request):
                path = None if self._saved_step == self.step else self.save_checkpoint()
                raise TrainingInterrupted(self.step, path)
            step_metrics = self._optimizer_step(batches)
            self.step += 1
            samples += cfg.batch_size
            for name, value in step_metrics.items() if cfg.log_every else ():  # no lines: nothing to average
                window.setdefault(name, []).append(value)
            if bar is not None:
                bar.update(1)
            done = self.step == stop
            if cfg.log_every and (self.step % cfg.log_every == 0 or done):
                # the mean over the logged steps and over ranks; (K,) tensors become name/scale{k}
                last = reduce_over_ranks({name: metric_mean(values) for name, values in window.items()})
                last["samples_per_second"] = samples / max(time.perf_counter() - started, 1e-9)
                self.log_metrics(last, "train")
                if bar is not None:
                    shown = self.progress_metric if self.progress_metric in last else "loss"
                    bar.set_postfix({shown: f"{last.get(shown, float('nan')):.4f}"})
                window = self.metrics_window = {}
                started, samples = time.perf_counter(), 0
            if cfg.eval_every and (self.step % cfg.eval_every == 0 or done):
                self.run_evaluation()
            if cfg.preview_every and (self.step % cfg.preview_every == 0 or done) and self.dist.is_main:
                with self._isolated_rng():
                    self.preview(self.step)
            if done or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0):
                self.save_checkpoint()
        return last

    def _stop_requested(self, stop_request: StopRequest) -> bool:
        """Whether any rank got a stop signal: all ranks must stop (and checkpoint) at the same step."""
        if not self.dist.is_distributed:
            return stop_request.requested
        flag = torch.tensor(float(stop_request.requested), device=self.device)
        return bool(distributed.all_reduce_sum(flag).item())

    def _optimizer_step(self, batches) -> dict[str, torch.Tensor]:
        cfg = self.config
        scheduled = {}
        for name, optimizer in self.optimizers.items():
            scheduled[name] = apply_schedule(
                optimizer,
                self.step,
                cfg.total_steps,
                cfg.warmup_steps,
                cfg.lr_schedule,
                cfg.end_lr_factor,
                cfg.weight_decay,
                cfg.weight_decay_end,
                cfg.warmup_start,
            )
        for module in self.wrapped.values():
            module.train()
        micro_values: dict[str, list[torch.Tensor]] = {}
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            with contextlib.ExitStack() as stack:
                if micro < cfg.grad_accum - 1:  # gradients are all-reduced once, on the last micro-step
                    for module in self.wrapped.values():
                        stack.enter_context(distributed.no_sync(module))
                with self.autocast():
                    out = self.train_step(batch)
                if "loss" not in out:
                    raise ValueError(f"{type(self).__name__}.train_step must return a dict with a 'loss' tensor")
                self.scaler.scale(out["loss"] / cfg.grad_accum).backward()
            for name, value in out.items():
                value = torch.as_tensor(value.detach() if torch.is_tensor(value) else value, dtype=torch.float32)
                micro_values.setdefault(name, []).append(value.to(self.device, torch.float32))
        # the step's metrics: means over its micro-batches (a per-scale NaN, no value, is left out of the mean)
        sums = {name: metric_mean(values) for name, values in micro_values.items()}
        stepping = []
        for name, optimizer in self.optimizers.items():
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if not params:
                continue  # e.g. a discriminator before its start step: nothing to update
            stepping.append(optimizer)
            self.scaler.unscale_(optimizer)
            if cfg.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if hasattr(norm, "full_tensor"):  # FSDP2: the norm is a replicated DTensor
                    norm = norm.full_tensor()
                sums[f"grad_norm/{name}" if name != "model" else "grad_norm"] = norm.detach().float()
        # Checked before any optimizer step (on every rank alike): a NaN never reaches the weights.
        if (what := non_finite(sums, self.precision, self.dist.is_distributed)) is not None:
            raise NonFiniteLoss(what, self.step + 1, self.run_dir, self._saved_step)
        for optimizer in stepping:
            self.scaler.step(optimizer)
        self.scaler.update()
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.raw_model)
        self.after_optimizer_step()
        # the logged lr is the model's ("model" comes first); a tokenizer's discriminator may have its own --disc-lr
        sums["lr"] = torch.tensor(scheduled["model"][0], device=self.device)
        return sums

    def after_optimizer_step(self) -> None:
        """Hook after every optimizer step (e.g. dead-code restarts); default: nothing."""
        return None

    @torch.no_grad()
    def run_evaluation(self) -> dict[str, float]:
        """Average ``eval_step`` over the held-out samples and ranks: the raw weights' metrics, logged as split
        "eval", and with an EMA the EMA weights' (the ones ``export`` writes), logged as split "eval_ema" with the
        same names. The held-out watch follows the exported weights' loss.

        Returns:
            The raw weights' metrics (empty without held-out data or an ``eval_step``).
        """
        if self.eval_dataset is None:
            return {}
        for module in self.wrapped.values():
            module.eval()
        metrics = self._held_out_metrics(self.model)
        if not metrics:
            return {}
        self.log_metrics(metrics, "eval")
        exported = metrics
        if self.ema is not None:
            exported = self._held_out_metrics(self.ema.module)
            self.log_metrics(exported, "eval_ema")
        if isinstance(exported.get("loss"), float) and (
            warning := self.held_out_watch.update(self.step, exported["loss"])
        ):
            log.warning(warning)
        return metrics

    def _held_out_metrics(self, model: nn.Module) -> dict[str, float]:
        """``eval_step`` of ``model`` averaged over the held-out samples and ranks (empty without an ``eval_step``)."""
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), device=self.device)
        with self._isolated_rng():
            batches = eval_batches(self.eval_dataset, self.config.eval_samples, self.micro_batch, self.dist)
            for batch, counted in batches:
                with self.autocast():
                    out = self.eval_step(batch, model)
                if out is None:
                    return {}
                if not counted:  # a repeat that keeps this rank's forwards (FSDP collectives) in step with the others
                    continue
                for name, value in out.items():
                    value = value.detach().float()
                    sums[name] = sums.get(name, 0) + value.sum(0)
                count += next(iter(out.values())).shape[0]
        if not sums:
            return {}
        return reduce_over_ranks(sums, mean_over=count)

    @contextlib.contextmanager
    def _isolated_rng(self):
        """Evaluation and previews must not change the training RNG streams (exact resume)."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            yield

    # ----------------------------------------------------------------------------------- logging
    def log_metrics(self, metrics: dict[str, float], split: str) -> None:
        self.metrics_log.write(self.step, split, metrics)
        log.info("step %d [%s] %s", self.step, split, format_metrics(metrics))

    @contextlib.contextmanager
    def preview_model(self) -> Iterator[nn.Module]:
        """The weights previews show (the EMA's, else the raw model's) in eval mode for the block, without
        gradients: the raw weights are in train mode during training, and a person should not look at dropout."""
        model = self.ema.module if self.ema is not None else self.raw_model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield model
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------------------- checkpoints
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything resuming needs, as plain data (call on every rank: FSDP and RNG gathering are collective).

        Only rank 0's state is written, and only rank 0's holds the weights: the other ranks take part in the
        collectives but copy no weights to the CPU (their "models" entries are empty, their "ema" is None)."""
        keep = self.dist.is_main
        return {
            "format": 1,
            "step": self.step,
            "configs": self.run_config,
            "models": {name: distributed.full_state_dict(m, keep=keep) for name, m in self.wrapped.items()},
            "ema": self.ema.state_dict() if self.ema is not None and keep else None,
            "optimizers": {
                name: distributed.optimizer_state_dict(self.wrapped[name], opt) for name, opt in self.optimizers.items()
            },
            "scaler": self.scaler.state_dict(),
            "sampler": self.sampler.state_for_step(self.step * self.config.grad_accum),
            "rng": distributed.all_gather_objects(ckpt.capture_rng_state()),
            "metrics_window": distributed.all_gather_objects(
                {name: torch.stack(values).cpu() for name, values in self.metrics_window.items()}
            ),
            "world_size": self.dist.world_size,
            "held_out_watch": self.held_out_watch.state_dict(),
            "extra": self.extra_state(),
        }

    def save_checkpoint(self) -> Path:
        """Write this step's checkpoint (rank 0) and prune old ones; every rank returns its path.

        Raises:
            CheckpointWriteError: on every rank, when rank 0 could not write it (disk full, permissions); the
                previous checkpoint stays intact and no temporary file is left.
        """
        state = self.checkpoint_state()
        path = ckpt.checkpoint_path(self.run_dir, self.step)
        error: OSError | None = None
        if self.dist.is_main:
            try:
                self.metrics_log.flush()
                ckpt.save_checkpoint(path, state)
                ckpt.prune_checkpoints(self.run_dir, self.config.keep_checkpoints, saved_step=self.step)
            except OSError as err:
                error = err
        if self.dist.is_distributed:  # also the barrier: no rank runs ahead of a checkpoint being written
            failed = distributed.all_reduce_sum(torch.tensor(float(error is not None), device=self.device))
            if failed.item() and error is None:
                error = OSError(None, "rank 0 could not write it")
        if error is not None:
            raise CheckpointWriteError(path, error, self.run_dir, self._saved_step) from error
        self._saved_step = self.step
        return path

    def _resume(self) -> None:
        found = self._load_agreed_checkpoint()
        if found is None:
            self.metrics_log.truncate_after(0)  # lines of a start that crashed before its first checkpoint
            return
        state, path = found
        if not (self.run_dir / "config.json").is_file() and state.get("configs"):
            # checkpoints without their config.json (copied to fork a run): they still say what made them
            refuse_another_config(self.run_dir, state["configs"], self.run_config, self.config.total_steps)
        for name, module in self.wrapped.items():
            if name not in state["models"]:
                raise ValueError(f"checkpoint {path} has no weights for {name!r}; it belongs to another trainer")
            distributed.load_full_state_dict(module, state["models"][name])
        for name, optimizer in self.optimizers.items():
            distributed.load_optimizer_state_dict(self.wrapped[name], optimizer, state["optimizers"][name])
        if self.ema is not None:
            if state["ema"] is None:
                self.ema = EMA(self.raw_model, self.config.ema_decay)
            else:
                self.ema.load_state_dict(state["ema"])
        if state["scaler"]:  # empty when the run so far had no fp16 (precision may change at a resume): start afresh
            self.scaler.load_state_dict(state["scaler"])
        self.sampler.load_state_dict(self._resumed_position(state, path))
        self.step = self._saved_step = int(state["step"])
        self.load_extra_state(state.get("extra", {}))
        self.held_out_watch.load_state_dict(state.get("held_out_watch", {}))  # older checkpoints: none
        windows = state.get("metrics_window") or [{}] * int(state["world_size"])  # older checkpoints: none
        if int(state["world_size"]) == self.dist.world_size:
            ckpt.restore_rng_state(state["rng"][self.dist.rank])
            window = windows[self.dist.rank]
        else:
            log.warning(
                "checkpoint %s was written by %d processes, now %d: RNG streams restart from the seed",
                path,
                state["world_size"],
                self.dist.world_size,
            )
            # every rank starts from the saved ranks' per-step means: the next line averages the same steps
            window, left_out = merge_rank_windows(windows)
            if left_out:
                log.warning(
                    "the first metrics line after this resume averages %s over the steps from %d on only (the saved "
                    "processes kept them for different steps)",
                    ", ".join(left_out),
                    self.step + 1,
                )
        self.metrics_window = {name: list(values.to(self.device).unbind(0)) for name, values in window.items()}
        self.metrics_log.truncate_after(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    def _resumed_position(self, state: dict[str, Any], path: Path) -> dict[str, Any]:
        """The checkpoint's data position, for this run's sampler.

        The sampler cuts the data into micro-steps of ``batch_size / grad_accum`` samples over all processes, and
        an optimizer step takes ``grad_accum`` of them. Another --grad-accum at the same batch size (to go on with
        fewer or more processes) cuts each step's samples differently, but step s still trains on samples
        ``s * batch_size`` to ``(s + 1) * batch_size`` of the data stream, as long as every epoch holds the same
        samples (it drops the ``len % micro-step`` samples of its end): then the position carries over. The
        gradient is the same mean over the same samples (up to float summation order).

        Raises:
            ValueError: the cut cannot change (the stream would differ, or the trainer's steps depend on the
                cut), naming the --grad-accum (or the process count) that resumes this run.
        """
        saved = state["sampler"]
        group, saved_group = self.sampler.global_batch_size, int(saved.get("global_batch_size", 0))
        size = self.sampler.dataset_len
        if saved_group == group or saved_group < 1 or saved.get("dataset_len") != size:
            return saved  # the same cut, or another data set: the sampler's own check says what differs
        batch, world_size = self.config.batch_size, self.dist.world_size
        saved_accum, saved_world = batch // saved_group, int(state["world_size"])

        def epoch_samples(micro_step: int) -> int:  # an epoch's samples: the end that fills no micro-step is dropped
            return size // micro_step * micro_step

        def fits(accum: int) -> bool:  # whether --grad-accum accum on world_size processes resumes the same stream
            if batch % (world_size * accum):
                return False
            if batch // accum == saved_group:
                return True
            return self.regroups_micro_batches and epoch_samples(batch // accum) == epoch_samples(saved_group)

        if not fits(self.config.grad_accum):
            if not self.regroups_micro_batches:
                why = f"{type(self).__name__} updates statistics per micro-step, so their size must stay"
            else:
                why = (
                    f"an epoch would train on {epoch_samples(group)} of the {size} samples instead of "
                    f"{epoch_samples(saved_group)}, so later steps would see other samples"
                )
            working = [accum for accum in range(1, batch // world_size + 1) if fits(accum)]
            if working:
                fix = f"resume with --grad-accum {' or '.join(map(str, working))} on {world_size} process(es)"
            else:
                fix = (
                    f"resume on {saved_world} process(es) (torchrun --nproc_per_node={saved_world} on one node) "
                    f"with --grad-accum {saved_accum}"
                )
            raise ValueError(
                f"checkpoint {path} was trained with --grad-accum {saved_accum} on {saved_world} process(es) "
                f"(micro-steps of {saved_group} samples over all processes); --grad-accum {self.config.grad_accum} "
                f"on {world_size} makes micro-steps of {group}, and {why}: {fix}"
            )
        step = int(state["step"])
        position = self.sampler.state_for_step(step * self.config.grad_accum)
        log.info(
            "resuming %s with --grad-accum %d (micro-steps of %d samples over all processes, %d before): every step "
            "trains on the same samples as before",
            path,
            self.config.grad_accum,
            group,
            saved_group,
        )
        return {**saved, "global_batch_size": group, "epoch": position["epoch"], "step": position["step"]}

    def _load_agreed_checkpoint(self) -> tuple[dict[str, Any], Path] | None:
        """The checkpoint to resume from, the same on every rank: rank 0 picks its newest good one, the others load
        that file. Ranks that picked on their own could see different files (a node-local --run-dir, a network file
        system that lags after a crash) and resume at different steps, after DDP already broadcast the weights.

        Rank 0 alone reads the whole file for its SHA-256 (the others wait less long than while it writes a
        checkpoint, which hashes the file too); the others compare the checksum recorded beside their copy with
        rank 0's. Any rank's failure is raised on every rank with the same message.
        """
        if not self.dist.is_distributed:
            return ckpt.load_latest(self.run_dir)
        found, failure = None, None
        if self.dist.is_main:
            try:
                found = ckpt.load_latest(self.run_dir)
            except (ckpt.CheckpointError, OSError) as err:  # told to the others, who would wait for a choice
                failure = err
        # (file name, step, recorded SHA-256) of rank 0's choice, None without one; only rank 0's entry is used
        choice = None if found is None else (found[1].name, int(found[0]["step"]), ckpt.recorded_sha256(found[1]))
        error, choice = distributed.all_gather_objects((None if failure is None else str(failure), choice))[0]
        if failure is not None:
            raise failure
        if error is not None:
            raise ckpt.CheckpointError(error)
        problem = None
        if choice is not None and not self.dist.is_main:
            name, step, sha256 = choice
            path = self.run_dir / ckpt.CHECKPOINT_DIR / name
            try:
                if not path.is_file():
                    raise ckpt.CheckpointError(f"{path} does not exist here")
                if ckpt.recorded_sha256(path) != sha256:
                    raise ckpt.CheckpointError(f"{path} here is another file: its recorded SHA-256 differs")
                state = ckpt.load_checkpoint(path, verify=False)  # the file rank 0 verified
                if int(state["step"]) != step:
                    raise ckpt.CheckpointError(f"{path} here holds step {state['step']}, rank 0's step {step}")
                found = state, path
            except (ckpt.CheckpointError, OSError) as err:
                problem = f"rank {self.dist.rank} cannot resume from {name}, rank 0's newest checkpoint: {err}"
        problems = [problem for problem in distributed.all_gather_objects(problem) if problem is not None]
        if problems:
            raise ValueError(
                f"{problems[0]}: every process must see the same --run-dir {self.run_dir}; put it on a file "
                "system that all nodes share (a folder local to each node gives each its own checkpoints)"
            )
        return found


def check_parallelism(config: TrainConfig | argparse.Namespace, world_size: int) -> None:
    """Refuse, before any work, the strategies that would go wrong with ``world_size`` processes.

    ``config`` is a ``TrainConfig`` or the command's parsed flags (the CLI checks before it reads any data): only
    ``strategy``, ``ema_decay`` and ``preview_every`` are read."""
    if world_size > 1 and config.strategy == "none":
        # Nothing would sync the gradients: W unrelated models, each trained on its 1/W of the data, and rank 0
        # saves its own one, while the logged loss (averaged over ranks) looks normal.
        raise ValueError(
            f"--strategy none is for one process, and this run has {world_size}: use --strategy ddp (or fsdp) "
            "under torchrun, or start a single process"
        )
    if world_size > 1 and config.strategy == "fsdp" and config.ema_decay is None and config.preview_every:
        # Rank 0 samples previews alone, from the EMA's copy (never sharded) or else from the raw weights, which
        # FSDP shards in place: sampling would fail at the first preview, mixing its shards with whole tensors.
        raise ValueError(
            "--strategy fsdp keeps the raw weights sharded, so rank 0 cannot sample previews from them: keep an "
            "EMA (--ema-decay, e.g. 0.9999) or turn previews off with --preview-every none"
        )
