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
the non-finite check), ``run_dir`` (config.json), ``held_out_watch``, ``metrics``, ``parallel_guards`` (set-ups
refused before any work), ``resume`` (what a checkpoint holds, its write, the resume from it) and ``checkpoint``
(the file format).

References: minGPT ``mingpt/trainer.py``, torchtitan ``trainer.py``, DiT ``train.py``.
"""

from __future__ import annotations

import abc
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
from nextscale.training import resume
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
from nextscale.training.metrics import MetricsLog, format_metrics, metric_mean, reduce_over_ranks
from nextscale.training.optim import apply_schedule, build_adamw
from nextscale.training.parallel_guards import check_parallelism
from nextscale.training.precision import autocast_context, grad_scaler, non_finite, resolve_precision
from nextscale.training.run_dir import check_run_dir, write_run_config

log = distributed.get_logger(__name__)


class Trainer(abc.ABC):
    """Base trainer; see the module docstring.

    Construction seeds every RNG of the process with ``seed * world_size + rank`` (dropout and label
    dropout differ per rank) and resumes from the run directory's newest readable checkpoint (rank 0 picks it,
    every rank loads that file: ``resume.resume_latest``).

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
        # averages the same steps as in an uninterrupted run (also on another number of processes, see ``resume``)
        self.metrics_window: dict[str, list[torch.Tensor]] = {}
        self.held_out_watch = HeldOutWatch(of_ema=self.ema is not None)  # the weights export writes
        self.saved_step: int | None = None  # step of the newest checkpoint this run holds (named by errors)
        seed_everything(config.seed * max(self.dist.world_size, 1) + self.dist.rank)
        self.metrics_log = MetricsLog(self.run_dir, self.dist.is_main)
        resume.resume_latest(self)

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
            raise RunWriteError(err, self.step + 1, self.run_dir, self.saved_step) from err
        except RuntimeError as err:
            if self.dist.is_distributed and is_collective_failure(err):
                raise PeerLost(err, self.step + 1, self.run_dir, self.saved_step) from err
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
                path = None if self.saved_step == self.step else self.save_checkpoint()
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
            raise NonFiniteLoss(what, self.step + 1, self.run_dir, self.saved_step)
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
        """Everything resuming needs, as plain data; every rank calls it (``resume.checkpoint_state``)."""
        return resume.checkpoint_state(self)

    def save_checkpoint(self) -> Path:
        """Write this step's checkpoint (rank 0) and prune old ones; every rank returns its path.

        Raises:
            CheckpointWriteError: on every rank, when rank 0 could not write it (disk full, permissions); the
                previous checkpoint stays intact and no temporary file is left.
        """
        state = self.checkpoint_state()
        path = resume.write_checkpoint(
            state, self.run_dir, self.step, self.config.keep_checkpoints, self.dist, self.metrics_log, self.saved_step
        )
        self.saved_step = self.step
        return path
