"""The training loop: ``Trainer`` and ``fit``.

The Trainer owns *when* things run (ordering, schedules, validation, callbacks); what one step
computes lives in :meth:`Trainer.train_step` and :meth:`Trainer.eval_step`, which users may
override.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.distributed import session as distributed
from trainwell.loop import preflight
from trainwell.reliability import resume as resuming
from trainwell.callbacks import Callback, CallbackList, EarlyStopping, ProgressBar
from trainwell.callbacks.checkpointing import Checkpointing
from trainwell.callbacks.process_sync import ProcessSync
from trainwell.callbacks.run_dir import run_dir_callbacks
from trainwell.config import TrainConfig
from trainwell.reliability.divergence import judged_on_device
from trainwell.exceptions import ConfigError, DataError
from trainwell.reliability.healing import build_guard, divergence_advice
from trainwell.observe.logs import format_epoch, log_run_start, log_to_file, setup_console_logging
from trainwell.loop.metrics import ValidationMetrics
from trainwell.reliability.oom import MicroBatching
from trainwell.loop.optimizers import build_optimizer, scaled_lr
from trainwell.loop.precision import Precision
from trainwell.reliability.preemption import SignalCatcher, stop_on_signal
from trainwell.files.rundir import prepare_run_dir, write_text
from trainwell.loop.schedules import schedule_for
from trainwell.system import memory_metrics, reset_peak_memory, resolve_device, seed_everything
from trainwell.loop.tasks import Task

logger = logging.getLogger("trainwell")


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: One dict per epoch: epoch, train_loss, val_loss, val_accuracy, val_f1,
            val_precision, val_recall (classification) or val_mae, val_rmse, val_r2
            (regression), lr, gpu_memory (CUDA) or memory (CPU), epoch_time_s, samples_per_s,
            nonfinite_steps.
        best: The best epoch's row by val_loss (by train_loss without validation).
        stopped_early: Whether early stopping ended training.
        run_dir: Where the run's files are, or None.
        model: The trained model (with the best weights when ``restore_best_weights``).
        best_checkpoint: The committed checkpoint of the best epoch by val_loss (the newest
            without validation), or None without a run directory.
    """

    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    stopped_early: bool
    run_dir: Path | None
    model: nn.Module | None = field(default=None, repr=False)
    best_checkpoint: Path | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's row."""
        return self.history[-1] if self.history else {}


class Trainer:
    """Trains a model with the best practices on by default.

    Args:
        config: A :class:`TrainConfig`; None uses the defaults.
        callbacks: Extra :class:`~trainwell.callbacks.Callback` objects, run after the built-in
            ones (early stopping, progress bar, metrics file).
        **options: :class:`TrainConfig` fields overriding ``config``.

    Attributes (during and after ``fit``):
        model: The module the loop calls (wrapped for DDP or compilation when in use).
        module: The plain ``nn.Module`` being trained (for ``state_dict``).
        optimizer, precision, task, device: The resolved training machinery.
        epoch: The current epoch, numbered from 1 (0 before training).
        global_step: Optimizer steps taken so far.
        history: Per-epoch metric rows.
        run_info: Versions, device, precision, threads, batch size, peak lr (set by ``fit``).
        last_grad_norm: The last step's pre-clipping gradient norm, a device tensor (reading syncs).
        last_validation: The last validation pass's :class:`~trainwell.loop.metrics.ValidationMetrics`.
        model_summary: The model's layers, output shapes on the first batch and parameter
            counts (:func:`trainwell.models.summary`), also written to ``model.txt``.
        should_stop: Set it to True (e.g. from a callback) to stop after the current epoch.
        checkpointing: The :class:`~trainwell.callbacks.checkpointing.Checkpointing` callback that
            writes the run's checkpoints (None without a run directory).
        distributed: Under torchrun, this process's :class:`~trainwell.distributed.session.Session`
            (rank, world_size, device); None in one process.

    Example:
        >>> trainer = Trainer(epochs=3, lr=3e-3)
        >>> result = trainer.fit(model, train_loader, val_loader)  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig | None = None, callbacks: Iterable[Callback] = (), **options: Any) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ConfigError(f"config={config!r} has the wrong type: expected a trainwell.TrainConfig or None.")
        config = config or TrainConfig()
        self.config = config.replace(**options) if options else config
        self.user_callbacks = list(callbacks)
        self.model: nn.Module | None = None
        self.module: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.precision: Precision | None = None
        self.task: Task | None = None
        self.device: torch.device | None = None
        self.callbacks = CallbackList()
        self.epoch = 0
        self.global_step = 0
        self.steps_per_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        self.model_summary: str | None = None
        self.events: list[dict[str, Any]] = []
        self.last_validation: ValidationMetrics | None = None
        self.last_grad_norm: torch.Tensor | None = None
        self.run_info: dict[str, Any] = {}
        self.should_stop = False
        self.peak_lr = self.config.lr
        self.checkpointing: Checkpointing | None = None
        self.distributed: distributed.Session | None = None
        self._signals = SignalCatcher()
        self._resume_position: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the loop

    def fit(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        resume: str | Path | None = None,
    ) -> FitResult:
        """Train ``model`` on ``train_loader``, validating on ``val_loader`` every epoch.

        The loop::

            validate config, model and loaders; probe the first batch (task, targets, batch size)
            under torchrun: join the processes, shard the loaders, wrap the model in DDP (distributed.py)
            if resuming: restore model, optimizer, scaler, RNGs, counters, callbacks, loader position
            for epoch in start_epoch..epochs:
                for batch in train_loader (from the saved batch when resuming inside the epoch):
                    with autocast: loss = train_step(batch)     # out of memory -> micro-batches
                    backward (scaled for fp16); clip grad norm
                    non-finite loss/grad -> skip the update; K in a row -> roll back, lr x 0.5;
                        M rollbacks -> DivergenceError
                    optimizer step; lr = peak_lr * schedule(global_step)
                    every checkpoint_every_steps: checkpoint; SIGTERM/SIGINT: checkpoint and stop
                metrics = evaluate(val_loader)                # val_loss, val_accuracy / val_mae
                callbacks.on_epoch_end(metrics)               # log, metrics.jsonl, early stopping, checkpoint
                if should_stop: break
            restore the best weights; return FitResult

        Args:
            model: Any ``nn.Module`` with trainable parameters; it is trained in place.
            train_loader: A non-empty, re-iterable source of ``(inputs, targets)`` batches: a
                DataLoader, a list of tuples, or :class:`trainwell.data.TensorLoader`.
            val_loader: The same for validation; without it a warning is logged.
            resume: ``"auto"`` continues from the newest good checkpoint of ``run_dir`` (or starts
                from the beginning when there is none); a checkpoint file or run directory
                continues from that checkpoint. None starts afresh.

        Returns:
            A :class:`FitResult`.

        Raises:
            ModelError: ``model`` is not an ``nn.Module`` or has no trainable parameters.
            DataError: a loader is empty or one-shot, a batch is not ``(inputs, targets)``, or the
                targets do not fit the model's outputs.
            ConfigError: an option is invalid for this model or device.
            CheckpointError: a checkpoint to resume from is corrupt, or one could not be written.
            CheckpointMismatchError: the checkpoint to resume from belongs to another model.
            DivergenceError: losses or gradients stayed non-finite after every rollback.
            OutOfMemoryError: a single sample does not fit in the device's memory.
            TrainingInterrupted: SIGTERM or SIGINT stopped training after a checkpoint.
        """
        setup_console_logging()
        preflight.check_inputs(model, train_loader, val_loader)
        # Under torchrun: join the other processes and train on this one's share of the data (in one
        # process, nothing changes); rank 0 alone writes the run directory, and picks the checkpoint.
        with distributed.data_parallel(self, train_loader, val_loader) as (train_loader, val_loader):
            run_dir = Path(self.config.run_dir) if self.config.run_dir is not None else None
            if run_dir is None:
                return self._fit(model, train_loader, val_loader, distributed.start_in(self.distributed, resume, None))
            resumes = resuming.continues_in(resume, run_dir)
            distributed.on_primary(self.distributed, prepare_run_dir, run_dir, self.config.to_yaml_dict(), resuming=resumes)
            # SIGTERM/SIGINT stop training after a checkpoint only where there are checkpoints to write.
            signals = self._signals if self.config.save_checkpoints else contextlib.nullcontext()
            log_file = log_to_file(run_dir / "train.log") if distributed.is_primary(self.distributed) else contextlib.nullcontext()
            with log_file, signals:
                return self._fit(model, train_loader, val_loader, distributed.start_in(self.distributed, resume, run_dir))

    def _fit(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None,
        checkpoint: tuple[Path, dict[str, Any]] | None = None,
    ) -> FitResult:
        self._setup(model, train_loader, val_loader)
        self._resume_from(checkpoint, train_loader)
        try:
            self.callbacks.call("on_train_begin", self)
            while self.epoch < self.config.epochs and not self.should_stop:
                self.epoch += 1
                self.callbacks.call("on_epoch_begin", self, epoch=self.epoch)
                started = time.perf_counter()
                row = {"epoch": self.epoch, **self._train_epoch(train_loader)}
                if val_loader is not None:
                    # Validation must not change training's randomness (a DataLoader draws a seed
                    # from the global RNG whenever it is iterated): with or without it, training
                    # sees the same dropout masks and batch order.
                    with torch.random.fork_rng(devices=self._rng_devices), distributed.evaluating(self):
                        val_metrics = self.evaluate(val_loader)
                    self.callbacks.call("on_eval_end", self, metrics=val_metrics)
                    row.update(val_metrics)
                row.update(memory_metrics(self.device))
                row["epoch_time_s"] = time.perf_counter() - started
                self.history.append(row)
                logger.info(format_epoch(row, self.config.epochs))
                self.callbacks.call("on_epoch_end", self, epoch=self.epoch, metrics=row)
                self._after_epoch()
            self.callbacks.call("on_train_end", self)
        except BaseException as error:
            self.callbacks.call("on_exception", self, error=error)
            raise
        return self._result()

    def _train_epoch(self, train_loader: Iterable[Any]) -> dict[str, Any]:
        """One pass over the training data; returns the epoch's training metrics."""
        self.model.train()
        set_epoch = getattr(train_loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch - 1)
        reset_peak_memory(self.device)
        # Resuming inside an epoch starts at the saved batch with the epoch's sums restored.
        train_batches, first_batch = resuming.begin_epoch(self, train_loader)
        log_every = self.config.log_every_steps
        started = time.perf_counter()
        for batch_index, batch in enumerate(train_batches, start=first_batch):
            self.callbacks.on_batch_begin(self, batch_index)
            inputs, targets = batches.split_batch(batch)
            self.epoch_samples += batches.count_samples(inputs)
            if self._move_batches:
                inputs, targets = batches.move_to((inputs, targets), self.device, non_blocking=True)
            if self._channels_last:
                inputs = batches.channels_last(inputs)
            if self._scheduled:
                self._set_lr(self.global_step)
            loss = self._step(inputs, targets)
            self.global_step += 1
            if self._device_checks and self.global_step % log_every == 0:
                self.guard.flush(self.global_step)
            self.callbacks.on_batch_end(self, batch_index, loss)
            if self._signals.received is not None:
                stop_on_signal(self, batch_in_epoch=batch_index + 1)
        # Compilation is reported on its own (a "compile" event), not as slow training.
        elapsed = time.perf_counter() - started - self._compile_seconds
        self._compile_seconds = 0.0
        self.guard.flush(self.global_step)
        samples = self.epoch_samples * (self.distributed.world_size if self.distributed is not None else 1)
        return {
            "train_loss": self.running_loss(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": samples / elapsed if elapsed > 0 else float("nan"),
            "nonfinite_steps": self.guard.skipped - self._nonfinite_at_epoch_start,
        }

    def _step(self, inputs: Any, targets: Any) -> torch.Tensor:
        """Forward, backward and optimizer step on one batch; out of memory, as micro-batches (oom.py)."""
        if self._compiling:
            return self._compiled_first_step(inputs, targets)
        if self._micro_batching.chunks > 1:
            return self._micro_batching.step(self, inputs, targets)
        try:
            with self.precision.autocast():
                loss = _loss_of(self.train_step((inputs, targets)))
            self._backward_and_step(loss)
            return loss
        except torch.OutOfMemoryError:
            if not self.config.split_batch_on_oom:
                raise
            loss = None
        # Retried only here, after the except block, once the failed attempt's tensors are released.
        return self._micro_batching.recover(self, inputs, targets)

    def _compiled_first_step(self, inputs: Any, targets: Any) -> torch.Tensor:
        """The first step under ``torch.compile``, timed: it carries the compilation."""
        self._compiling = False
        started = time.perf_counter()
        loss = self._step(inputs, targets)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self._compile_seconds += seconds
        self.record_event("compile", message=f"torch.compile: the first step, with compilation, took {seconds:.1f} s.", compile_time_s=seconds)
        return loss

    def _backward_and_step(self, loss: torch.Tensor, backward: bool = True) -> None:
        """Backward (unless the gradients are already accumulated), clip, and step unless the step went bad."""
        if backward:
            self.precision.backward(loss)
        if self.distributed is not None:
            # Every process judges the step by the same number: the mean loss of the global batch.
            loss = self.distributed.mean(loss)
        grad_norm = None
        if self.config.max_grad_norm is not None:
            self.precision.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self._parameters, self.config.max_grad_norm)
            # Kept on the device; loggers read it only at their logging interval.
            self.last_grad_norm = grad_norm
        scaled = self.precision.scaler is not None
        # Under fp16 a GradScaler skips steps with overflowing gradients and lowers its scale;
        # that is calibration, not divergence, so only the loss itself is judged there.
        judge_norm = grad_norm is not None and not scaled
        if self._device_checks:
            bad = ~torch.isfinite(loss.detach() + grad_norm if judge_norm else loss.detach())
            if self._spikes is not None:
                bad = self._spikes.spikes_on_device(loss, bad)
            if not scaled:
                self.optimizer.found_inf = bad.float()
            self.precision.step(self.optimizer)
            self.guard.observe_on_device(bad)
            self._loss_sum = self._loss_sum + torch.where(bad, 0.0, loss.detach().float())
            self._loss_count = self._loss_count + (~bad).to(self._loss_count.dtype)
        else:
            loss_value = loss.item()
            finite = math.isfinite(loss_value) and (not judge_norm or math.isfinite(grad_norm.item()))
            spike = self._spikes.check(loss_value) if finite and self._spikes is not None else None
            good = finite and spike is None
            if good or scaled:
                self.precision.step(self.optimizer)
            if good:
                self._loss_sum += loss_value
                self._loss_count += 1
            self.guard.observe(good, self.global_step, reason=spike or "Non-finite loss or gradient")
        self.optimizer.zero_grad(set_to_none=True)

    def train_step(self, batch: tuple[Any, Any]) -> dict[str, torch.Tensor]:
        """What one training step computes: the loss of one batch (already on the device).

        Runs inside the precision's autocast; the Trainer does backward, clipping and the
        optimizer step. Override it to train with a custom objective.

        Returns:
            ``{"loss": scalar tensor}``; a bare scalar tensor is accepted too.
        """
        inputs, targets = batch
        outputs = batches.forward(self.model, inputs)
        return {"loss": self.task.loss(outputs, targets)}

    def eval_step(self, batch: tuple[Any, Any]) -> dict[str, Any]:
        """What one validation step computes: ``{"loss", "outputs", "targets"}`` for one batch."""
        inputs, targets = batch
        outputs = batches.forward(self.model, inputs)
        return {"loss": self.task.loss(outputs, targets), "outputs": outputs, "targets": targets}

    @torch.no_grad()
    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Mean loss and task metrics over ``loader``, weighted by batch size (no per-batch host sync).

        Returns:
            ``val_loss`` with ``val_accuracy``, ``val_f1``, ``val_precision``, ``val_recall``
            (classification) or ``val_mae``, ``val_rmse``, ``val_r2`` (regression); the pass's
            predictions stay in ``trainer.last_validation`` (with a confusion matrix).
        """
        was_training = self.model.training
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        samples = 0
        metric_sums: dict[str, torch.Tensor] = {}
        details = ValidationMetrics(self.task) if self.task is not None else None
        for batch in loader:
            inputs, targets = batches.split_batch(batch, "val_loader")
            count = batches.count_samples(inputs)
            batch = batches.move_to((inputs, targets), self.device, non_blocking=True)
            with self.precision.autocast():
                out = self.eval_step(batch)
            loss_sum += _loss_of(out).detach().double() * count
            samples += count
            if self.task is not None and "outputs" in out:
                for name, value in self.task.metric_sums(out["outputs"], out["targets"]).items():
                    metric_sums[name] = metric_sums[name] + value if name in metric_sums else value
                details.update(out["outputs"], out["targets"])
        self.model.train(was_training)
        names = list(metric_sums)
        totals = torch.stack([loss_sum, *(metric_sums[n].double() for n in names)])
        if self.distributed is not None:
            totals, samples = distributed.reduce_validation(self.distributed, totals, samples, details)
        values = totals.tolist()
        metrics = {"val_loss": values[0] / max(samples, 1)}
        if self.task is not None and names:
            metrics.update(self.task.summarize(dict(zip(names, values[1:]))))
            metrics.update(details.compute())
        self.last_validation = details
        return metrics

    # ------------------------------------------------------------------ helpers

    def record_event(self, event: str, level: int = logging.INFO, message: str | None = None, **fields: Any) -> None:
        """Record something that happened during training (a skipped step, a rollback, ...).

        The event is logged and kept in ``trainer.events``; with a run directory it is also
        written to metrics.jsonl as ``{"event": event, "epoch": ..., "step": ..., **fields}``.
        """
        record = {"event": event, "epoch": self.epoch, "step": self.global_step, **fields}
        self.events.append(record)
        logger.log(level, message if message is not None else str(record))

    def _resume_from(self, checkpoint: tuple[Path, dict[str, Any]] | None, train_loader: Iterable[Any]) -> None:
        """Restore the state a checkpoint recorded (when resuming), and keep it as the first good state."""
        if checkpoint is not None:
            resuming.restore(self, *checkpoint, train_loader)
        self.healer.remember(self)

    def _after_epoch(self) -> None:
        """Keep the good state to roll back to up to date, and stop here if a signal arrived during the epoch."""
        self.healer.on_epoch_end(self)
        if self._signals.received is not None:
            stop_on_signal(self, batch_in_epoch=None)

    def _record_skip(self, message: str, *args: Any, skipped: int) -> None:
        self.record_event("nonfinite_skip", logging.WARNING, message % args, skipped=skipped)

    def running_loss(self) -> float:
        """Mean training loss of the finite steps so far in this epoch (syncs the device)."""
        count = float(self._loss_count)
        return float(self._loss_sum) / count if count else float("nan")

    def _reset_running_loss(self) -> None:
        if self._device_checks:
            self._loss_sum = torch.zeros((), dtype=torch.float32, device=self.device)
            self._loss_count = torch.zeros((), dtype=torch.int64, device=self.device)
        else:
            self._loss_sum, self._loss_count = 0.0, 0

    def _set_lr(self, step: int) -> None:
        scale = self.schedule(step)
        for group, peak in zip(self.optimizer.param_groups, self._peak_lrs):
            group["lr"] = peak * scale

    def _setup(self, model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any] | None) -> None:
        config = self.config
        self.epoch, self.global_step, self.history, self.events, self.should_stop, self.task = 0, 0, [], [], False, None
        self.last_grad_norm = None
        self._resume_position, self._train_loader, self._epoch_start, self._nonfinite_at_epoch_start = None, train_loader, None, 0
        if config.seed is not None:
            seed_everything(config.seed)
        self.device = self.distributed.device if self.distributed is not None else resolve_device(config.device)
        self.precision = Precision(config.precision, self.device)
        self._rng_devices = [self.device] if self.device.type == "cuda" else []
        self.module = model.to(self.device)
        self._channels_last = _wants_channels_last(config.channels_last, self.module, self.device)
        if self._channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.model = self.module
        self._parameters = [p for p in self.module.parameters() if p.requires_grad]
        self.steps_per_epoch = preflight.loader_length(train_loader)
        batch_size, first_inputs = preflight.probe(self, train_loader, "train_loader")
        if val_loader is not None:
            preflight.probe(self, val_loader, "val_loader")
        else:
            logger.warning(
                "No val_loader given: training without validation, so there is no val_loss, no early "
                "stopping and no best-weight restore. Pass val_loader=... (best practice: always validate)."
            )
        # Under torchrun the lr is scaled for the global batch (every process's batch together).
        global_batch = self.distributed.check_batches(batch_size, self.steps_per_epoch) if self.distributed else batch_size
        self.peak_lr = scaled_lr(config, global_batch)
        self.optimizer = build_optimizer(self.module, config, self.peak_lr)
        self._peak_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._device_checks = self._checks_on_device()
        self.healer, self._spikes, self.guard = build_guard(self, advice=divergence_advice(config, self.peak_lr, self.precision.name))
        self._micro_batching = MicroBatching()
        self.schedule = schedule_for(config, self.steps_per_epoch)
        # A constant rate without warm-up needs no per-step update; CPU batches need no move.
        self._scheduled = not (config.schedule == "constant" and not config.warmup_fraction)
        self._move_batches = self.device.type != "cpu"
        # Checkpointing runs last, so that every other callback's state at this point is in the checkpoint.
        self.checkpointing = Checkpointing.for_config(config)
        saver = [self.checkpointing] if self.checkpointing is not None else []
        if self.distributed is not None:
            # After every callback that may set should_stop, before the checkpoint that records it.
            saver.insert(0, ProcessSync(self.distributed))
        self.callbacks = CallbackList(self._builtin_callbacks(val_loader) + self.user_callbacks + saver)
        self.model_summary = preflight.summarize(self.module, first_inputs, self.device)
        self._compiling, self._compile_seconds = config.compile, 0.0
        if self.distributed is not None:
            self.model = self.distributed.wrap(self.module)
        if config.compile:
            self.model = torch.compile(self.model)
        self.run_info = log_run_start(self, batch_size)
        if config.run_dir is not None and distributed.is_primary(self.distributed):
            write_text(Path(config.run_dir) / "model.txt", self.model_summary + "\n")

    def _checks_on_device(self) -> bool:
        """Whether non-finite steps are judged on the device, with no per-step sync (divergence.judged_on_device)."""
        return judged_on_device(self.device, self.precision, self.optimizer)

    def _builtin_callbacks(self, val_loader: Iterable[Any] | None) -> list[Callback]:
        config = self.config
        builtins: list[Callback] = []
        if val_loader is not None and (config.early_stopping_patience is not None or config.restore_best_weights):
            builtins.append(
                EarlyStopping(
                    patience=config.early_stopping_patience,
                    min_delta=config.early_stopping_min_delta,
                    restore_best_weights=config.restore_best_weights,
                )
            )
        # Under torchrun, rank 0 alone shows progress and writes the run directory.
        primary = distributed.is_primary(self.distributed)
        if config.progress and primary:
            builtins.append(ProgressBar())
        if config.run_dir is not None:
            builtins += run_dir_callbacks(Path(config.run_dir), config.loggers) if primary else []
        elif config.loggers:
            logger.warning("loggers=%s write into run_dir, which is not set: nothing is logged. Set run_dir=...", config.loggers)
        return builtins

    def _result(self) -> FitResult:
        key = "val_loss" if any("val_loss" in row for row in self.history) else "train_loss"
        finite = [row for row in self.history if isinstance(row.get(key), float) and math.isfinite(row[key])]
        best = min(finite, key=lambda row: row[key]) if finite else None
        stopped = any(isinstance(c, EarlyStopping) and c.stopped_epoch is not None for c in self.callbacks)
        run_dir = Path(self.config.run_dir) if self.config.run_dir is not None else None
        best_checkpoint = self.checkpointing.best_path if self.checkpointing is not None else None
        return FitResult(list(self.history), best, stopped, run_dir, self.module, best_checkpoint)


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Train ``model`` with the best practices on by default, in one call.

    Args:
        model: Any ``nn.Module`` with trainable parameters (trained in place).
        train_loader: A non-empty, re-iterable source of ``(inputs, targets)`` batches.
        val_loader: Validation batches (strongly recommended).
        config: A :class:`TrainConfig`; keyword options override its fields.
        callbacks: Extra callbacks.
        resume: ``"auto"`` (the newest good checkpoint of ``run_dir``, if any), a checkpoint file
            or a run directory to continue from; None starts afresh.
        **options: Any :class:`TrainConfig` field: ``epochs`` (1..1000, default 10), ``lr``
            (1e-6..1, default 1e-3), ``weight_decay``, ``schedule``, ``precision``,
            ``max_grad_norm``, ``early_stopping_patience``, ``seed``, ``device``, ``task``,
            ``loss_fn``, ``run_dir``, ...

    Returns:
        A :class:`FitResult` with ``history``, ``best``, ``stopped_early``, ``run_dir``.

    Raises:
        ConfigError, ModelError, DataError: before training, for invalid input.
        DivergenceError: when losses stay non-finite after every rollback.
        CheckpointError: a checkpoint to resume from is corrupt, or one could not be written.
        TrainingInterrupted: SIGTERM or SIGINT stopped training after committing a checkpoint.

    Example:
        >>> import torch, trainwell
        >>> from trainwell.data import TensorLoader
        >>> x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> result = trainwell.fit(model, TensorLoader(x, y, seed=0), TensorLoader(x, y, shuffle=False),
        ...                        epochs=2, progress=False)
        >>> len(result.history)
        2
    """
    return Trainer(config, callbacks=callbacks, **options).fit(model, train_loader, val_loader, resume=resume)


def _loss_of(out: Any) -> torch.Tensor:
    loss = out["loss"] if isinstance(out, dict) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise DataError(
            f"the step returned {batches.describe(loss)} as its loss: expected a scalar tensor, "
            "either alone or as {'loss': tensor}."
        )
    return loss


def _wants_channels_last(setting: bool | None, module: nn.Module, device: torch.device) -> bool:
    """Channels-last layout: as asked, or (None) on CUDA for models with 2-D convolutions."""
    if setting is not None:
        return setting
    return device.type == "cuda" and any(isinstance(layer, nn.Conv2d) for layer in module.modules())
