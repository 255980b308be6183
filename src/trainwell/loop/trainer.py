"""The training loop: ``Trainer`` and ``fit``.

The Trainer owns *when* things run (ordering, schedules, validation, callbacks) and composes the
run's stateful parts; what one step computes lives in :meth:`Trainer.train_step` and
:meth:`Trainer.eval_step`, which users may override, and how a step is taken in
:mod:`trainwell.loop.step`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.callbacks import Callback, CallbackList
from trainwell.callbacks.checkpointing import Checkpointing
from trainwell.config import TrainConfig
from trainwell.data import batches
from trainwell.distributed.elastic import resume_after_restart
from trainwell.distributed.session import Session, joined
from trainwell.exceptions import ConfigError, DataError
from trainwell.loop import preflight
from trainwell.loop.averaging import WeightAverage
from trainwell.loop.batch_check import BatchCheck, stopped_at_bad_batch
from trainwell.loop.limits import RunLimits, dev_run_config
from trainwell.loop.optimizers import is_fused
from trainwell.loop.precision import Precision
from trainwell.loop.prediction import prediction_pass
from trainwell.loop.result import FitResult, fit_result
from trainwell.loop.run_dir import run_directory
from trainwell.loop.setup import assemble, resume_from
from trainwell.loop.state import FromState, TrainState, load_parts
from trainwell.loop.step import StepRunner
from trainwell.loop.tasks import Task
from trainwell.loop.validation import evaluation_pass, on_plain_module
from trainwell.observe.logs import format_epoch, setup_console_logging
from trainwell.observe.monitor import Monitor
from trainwell.reliability.divergence import check_finite_end, judged_on_device
from trainwell.reliability.preemption import SharedSignalCatcher, SignalCatcher, stop_on_signal
from trainwell.reliability.resume import checkpoint_of
from trainwell.reliability.rng import RandomState
from trainwell.system import memory_metrics, reset_peak_memory

logger = logging.getLogger("trainwell")


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
        state: The loop's :class:`~trainwell.loop.state.TrainState`; its counters are also
            attributes here: ``epoch`` (numbered from 1; 0 before training), ``global_step``,
            ``batch_in_epoch``, ``history`` (per-epoch metric rows), ``events``, ``should_stop``,
            ``epoch_samples``.
        run_info: Versions, device, precision, threads, batch size, peak lr (set by ``fit``).
        last_grad_norm: The last step's pre-clipping gradient norm, a device tensor (reading syncs).
        last_validation: The last validation pass's :class:`~trainwell.loop.metrics.ValidationMetrics`.
        model_summary: The model's layers, output shapes on the first batch and parameter
            counts (:func:`trainwell.models.summary`), also written to ``model.txt``.
        should_stop: Set it to True (e.g. from a callback) to stop after the current epoch.
        monitor: Which epoch is best (:class:`~trainwell.observe.monitor.Monitor`: ``monitor``/``mode``,
            val_loss by default): early stopping, ``FitResult.best``, the best checkpoint, the rollback target.
        limits: How long the run is (:class:`~trainwell.loop.limits.RunLimits`: epochs, max_steps, batches).
        checkpointing: The :class:`~trainwell.callbacks.checkpointing.Checkpointing` callback that
            writes the run's checkpoints (None without a run directory).
        distributed: Under torchrun, this process's :class:`~trainwell.distributed.session.Session`
            (rank, world_size, device); None in one process.
        target_scaling: The loaders' scaling of standardised regression targets (val_mae in their units), or None.
        averaging: The :class:`~trainwell.loop.averaging.WeightAverage` with ``ema_decay``, else None.

    The run's state is its parts' states, composed by :meth:`state_dict` (ARCHITECTURE.md).

    Example:
        >>> trainer = Trainer(epochs=3, lr=3e-3)
        >>> result = trainer.fit(model, train_loader, val_loader)  # doctest: +SKIP
    """

    epoch = FromState()
    global_step = FromState()
    batch_in_epoch = FromState()
    history = FromState()
    events = FromState()
    should_stop = FromState()
    epoch_samples = FromState()

    def __init__(self, config: TrainConfig | None = None, callbacks: Iterable[Callback] = (), **options: Any) -> None:
        if config is not None and not isinstance(config, TrainConfig):
            raise ConfigError(f"config={config!r} has the wrong type: expected a trainwell.TrainConfig or None.")
        config = config or TrainConfig()
        self.config = config.replace(**options) if options else config
        self.user_callbacks = list(callbacks)
        self.state = TrainState()
        self.model: nn.Module | None = None
        self.module: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.precision: Precision | None = None
        self.task: Task | None = None
        self.device: torch.device | None = None
        self.callbacks = CallbackList()
        self.steps_per_epoch: int | None = None
        self.model_summary: str | None = None
        self.last_validation: Any = None
        self.run_info: dict[str, Any] = {}
        self.peak_lr = self.config.lr
        self.monitor = Monitor("val_loss")
        self.checkpointing: Checkpointing | None = None
        self.distributed: Session | None = None
        self.runner: StepRunner | None = None
        self.batch_check: BatchCheck | None = None
        self.limits: RunLimits | None = None
        self.target_scaling: Any = None
        self.averaging: WeightAverage | None = None
        self._signals = SignalCatcher()

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
            under torchrun: join the processes, shard the loaders, wrap the model in DDP or shard it (FSDP)
            build the parts: optimizer, precision, schedule, guard + healer, step runner, callbacks
            if resuming: load_state_dict(checkpoint)         # every part's state, RNGs last
            while epochs and max_steps remain and not should_stop:     # loop/limits.py
                for batch in train_loader (from the saved batch when resuming inside the epoch; limited):
                    lr = peak_lr * schedule(global_step)        # or the user's scheduler (loop/schedules.py)
                    loss = step(batch)                          # loop/step.py: autocast, train_step, backward,
                                                                # clip, judge, optimizer step (every N batches)
                    non-finite loss/grad -> update skipped; K in a row -> roll back, lr x 0.5;
                        M rollbacks -> DivergenceError          # reliability/healing.py
                    every val_every_steps: validate; every checkpoint_every_steps: checkpoint; signal: stop
                metrics = evaluate(val_loader)                # loop/validation.py: val_loss, val_accuracy ...
                scheduler.step() per epoch; callbacks.on_epoch_end(metrics)  # early stopping, checkpoint ...
            restore the best weights by the monitor (early stopping); return FitResult

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
            ModelError: ``model`` is not an ``nn.Module``, has no trainable parameters, or is on the meta device.
            DataError: a loader is empty or one-shot, a batch is not ``(inputs, targets)``, or the
                targets of any batch do not fit the model's outputs (after a checkpoint, loop/batch_check.py).
            ConfigError: an option is invalid for this model or device.
            CheckpointError: a checkpoint to resume from is corrupt, or one could not be written.
            CheckpointMismatchError: the checkpoint to resume from belongs to another model.
            DivergenceError: losses or gradients stayed non-finite after every rollback, or the model
                ended with non-finite weights or untouched by every step.
            OutOfMemoryError: a single sample does not fit in the device's memory.
            RunDirLockedError, StorageError: another process is using ``run_dir``; or it cannot be written.
            TrainingInterrupted: SIGTERM or SIGINT stopped training after a checkpoint.
        """
        setup_console_logging()
        preflight.check_inputs(model, train_loader, val_loader)
        if self.config.fast_dev_run:
            self.config = dev_run_config(self.config, resume)
        # Under torchrun: join the other processes and train on this one's share of the data (in one
        # process, nothing changes); rank 0 alone writes the run directory, and picks the checkpoint.
        with joined(self.config) as session:
            self.distributed = session
            self._signals = SignalCatcher() if session is None else SharedSignalCatcher()
            if session is not None:
                self.config, train_loader, val_loader = session.share(self.config, train_loader, val_loader)
            try:
                result = self._fit_in_run_dir(model, train_loader, val_loader, resume)
            except BaseException as error:
                if session is not None:  # the DDP wrapper goes with the process group; FSDP's weights come home
                    self.model = self.module = session.release(model, self.module, error)
                raise
            if session is not None:
                self.model = self.module = result.model = session.release(model, self.module)
            return result

    def _fit_in_run_dir(self, model: nn.Module, train_loader: Any, val_loader: Any, resume: Any) -> FitResult:
        resume = resume_after_restart(resume, self.config.run_dir, self.distributed)
        # Check, then create: the run directory is refused now if it must be, and created (locked, with its
        # config.yaml and train.log) once every part is built and checked (loop/run_dir.py).
        with run_directory(self.config, self.distributed, resume, self._signals) as (checkpoint, create):
            return self._fit(
                model,
                train_loader,
                val_loader,
                checkpoint,
                lambda: create(self.config.to_yaml_dict(), self.model_summary),
            )

    def _fit(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None,
        checkpoint: tuple[Path, dict[str, Any]] | None = None,
        checked: Callable[[], None] = lambda: None,
    ) -> FitResult:
        self._setup(model, train_loader, val_loader)
        checked()  # every part is built and checked: now the run directory is created
        if checkpoint is not None:
            resume_from(self, *checkpoint)
            del checkpoint  # its tensors are the parts' now (a sharded one's pieces are on the device)
        self.healer.remember()  # the first good state to roll back to
        state, limits = self.state, self.limits
        try:
            self.callbacks.call("on_train_begin", self)
            while limits.go_on(state):
                if state.batch_in_epoch is None:  # else a resumed epoch goes on from its saved batch
                    state.begin_epoch(self.guard.skipped)
                self.callbacks.call("on_epoch_begin", self, epoch=state.epoch)
                started = time.perf_counter()
                row = {"epoch": state.epoch, **self._train_epoch(train_loader, val_loader)}
                if val_loader is not None:
                    row.update(self._validate(val_loader))
                row.update(memory_metrics(self.device))
                row["epoch_time_s"] = time.perf_counter() - started
                self.monitor.value_in(row)  # the monitored metric must be one the epochs record
                state.history.append(row)
                logger.info(format_epoch(row, limits.epochs))
                self.learning_rates.after_epoch(row)  # a scheduler of the user's that steps per epoch
                self.callbacks.call("on_epoch_end", self, epoch=state.epoch, metrics=row)
                self.healer.on_epoch_end()
                if self._signals.received is not None:
                    self._stop_on_signal()
            if self.averaging is not None:
                self.averaging.copy_to_module()  # the model is the average (early stopping may restore a better one)
            self.callbacks.call("on_train_end", self)
            # fit never returns a model with non-finite weights, or one that no step changed.
            total = self.distributed.sum if self.distributed is not None else None
            check_finite_end(
                self.module, steps=state.global_step, skipped=self.guard.skipped, advice=self.guard.advice, total=total
            )
        except BaseException as error:
            stopped = stopped_at_bad_batch(error, self) if isinstance(error, DataError) else error
            self.callbacks.call("on_exception", self, error=stopped)
            if stopped is error:
                raise
            raise stopped from error
        return fit_result(self)

    def _train_epoch(self, train_loader: Iterable[Any], val_loader: Iterable[Any] | None) -> dict[str, Any]:
        """One pass over the training data (the rest of it, when resuming inside the epoch); returns its metrics."""
        self.model.train()
        set_epoch = getattr(train_loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch - 1)
        reset_peak_memory(self.device)
        state, log_every, limits, runner = self.state, self.config.log_every_steps, self.limits, self.runner
        first = state.batch_in_epoch
        started = time.perf_counter()
        epoch_batches = limits.epoch(self.loader_position, first)
        for batch_index, batch in enumerate(epoch_batches, start=first):
            if limits.reached(state.global_step):  # max_steps: the epoch ends here
                break
            self.callbacks.on_batch_begin(self, batch_index)
            inputs, targets = batches.split_batch(batch)
            state.epoch_samples += batches.count_samples(inputs)
            if self._move_batches:
                inputs, targets = batches.move_to((inputs, targets), self.device, non_blocking=True)
            if self._channels_last:
                inputs = batches.channels_last(inputs)
            self.learning_rates.before_step(state.global_step)
            self.batch_check.at("train_loader", batch_index, state.epoch)
            try:
                loss = runner(inputs, targets, limits.left_in_epoch(batch_index))
            except (RuntimeError, ValueError, IndexError) as error:
                self.batch_check.refuse_if_reshaped(error, inputs)
                raise
            state.batch_in_epoch = batch_index + 1
            if runner.stepped:  # the last batch of a gradient window (every batch without accumulation)
                self._after_step(val_loader, batch_index, log_every)
            self.callbacks.on_batch_end(self, batch_index, loss, stepped=runner.stepped)
            if self._signals.received is not None:
                self._stop_on_signal()
        if runner.flush():  # a gradient window the epoch ended inside (a loader without a length)
            self._after_step(None, None, log_every)
        # Compilation is reported on its own (a "compile" event), not as slow training.
        elapsed = time.perf_counter() - started - runner.pop_compile_seconds()
        self.batch_check.flush()
        self.guard.flush(state.global_step)
        state.batch_in_epoch = None
        samples = state.epoch_samples * (self.distributed.world_size if self.distributed is not None else 1)
        return {
            "train_loss": self.running_loss(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": samples / elapsed if elapsed > 0 else float("nan"),
            "nonfinite_steps": self.guard.skipped - state.skipped_at_epoch_start,
        }

    def _after_step(self, val_loader: Iterable[Any] | None, batch_index: int | None, log_every: int) -> None:
        """Count the optimizer step just taken; step a per-step scheduler; validate every ``val_every_steps``."""
        state = self.state
        state.global_step += 1
        self.learning_rates.after_step()
        if self._device_checks and state.global_step % log_every == 0:
            self.batch_check.flush()
            self.guard.flush(state.global_step)
        if val_loader is not None and self.limits.validates_at(state.global_step, batch_index):
            self._validate(val_loader, inside_epoch=True)

    def _validate(self, val_loader: Iterable[Any], inside_epoch: bool = False) -> dict[str, float]:
        """One validation pass (limited by ``limit_val_batches``) between the ``on_eval_begin``/``on_eval_end`` hooks;
        one inside an epoch (``val_every_steps``) is recorded as a ``validation`` event."""
        self.callbacks.call("on_eval_begin", self)
        val_loader = self.limits.validation(val_loader)
        self.batch_check.at("val_loader", counting=True)
        # Validation must not change training's randomness (a DataLoader draws a seed from the global RNG).
        averaged = self.averaging.applied() if self.averaging is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=self._rng_devices), averaged, on_plain_module(self):
            metrics = self.evaluate(val_loader)
        if inside_epoch:
            shown = ", ".join(f"{name} {value:.4g}" for name, value in metrics.items())
            self.record_event("validation", message=f"Validation at step {self.global_step}: {shown}", **metrics)
        self.callbacks.call("on_eval_end", self, metrics=metrics)
        return metrics

    def _stop_on_signal(self) -> None:
        """Commit a checkpoint of the state after the step (or epoch) that just finished, then raise TrainingInterrupted."""
        save = lambda: self.checkpointing.save(self, kind="interrupt")  # noqa: E731
        stop_on_signal(self._signals.received, save, self.state, self.config.run_dir, self.distributed)

    # ------------------------------------------------------------------ what a step computes

    def train_step(self, batch: tuple[Any, Any]) -> dict[str, torch.Tensor]:
        """What one training step computes: the loss of one batch (already on the device).

        Runs inside the precision's autocast; the Trainer does backward, clipping and the
        optimizer step. Override it to train with a custom objective.

        Returns:
            ``{"loss": scalar tensor}``; a bare scalar tensor is accepted too.
        """
        inputs, targets = batch
        outputs = batches.forward(self.model, inputs)
        return {"loss": self.task.loss(outputs, self.batch_check(outputs, targets))}

    def eval_step(self, batch: tuple[Any, Any]) -> dict[str, Any]:
        """What one validation step computes: ``{"loss", "outputs", "targets"}`` for one batch."""
        inputs, targets = batch
        outputs = batches.forward(self.model, inputs)
        targets = self.batch_check(outputs, targets)
        return {"loss": self.task.loss(outputs, targets), "outputs": outputs, "targets": targets}

    def predict_step(self, inputs: Any) -> Any:
        """The outputs for one batch of inputs (on the device); override it for a model called its own way."""
        return batches.forward(self.model, inputs)

    def predict(self, loader: Iterable[Any], model: nn.Module | None = None) -> Any:
        """The outputs of :meth:`predict_step` for every batch of ``loader`` (eval mode, no gradients), on the CPU:
        concatenated along the batch dimension, else a list per batch (``loop.prediction.prediction_pass``).

        Args:
            loader: Batches as in training (the targets unused), or of inputs alone (tensors, 1-tuples, ``{"inputs"}``).
            model: The module to predict with; None is the one ``fit`` trained.

        Example:
            >>> probabilities = trainer.predict(test_loader).softmax(dim=1)  # doctest: +SKIP
        """
        return prediction_pass(self, loader, model)

    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Mean loss and task metrics over ``loader``, weighted by batch size (no per-batch host sync).

        Returns:
            ``val_loss`` and ``val_<name>`` for each metric of ``config.metrics`` (by default
            ``val_accuracy``, ``val_f1``, ``val_precision``, ``val_recall`` for classification,
            ``val_accuracy`` alone above 100 classes, ``val_mae``, ``val_rmse``, ``val_r2`` for
            regression); the pass's counts stay in ``trainer.last_validation`` (with the
            confusion matrix, where it is on).
        """
        result = evaluation_pass(
            self.model,
            loader,
            self.eval_step,
            task=lambda: self.task,
            device=self.device,
            source="val_loader",
            autocast=self.precision.autocast,
            session=self.distributed,
            metrics=self.config.metrics,
            target_scaling=self.target_scaling,
        )
        self.batch_check.flush()
        self.last_validation = result.details
        return result.metrics

    # ------------------------------------------------------------------ the run's state

    def parts(self) -> dict[str, Any]:
        """Every stateful part of the run (inside ``fit``), by its key in a checkpoint, in restore order.

        A new stateful part is added here, and nowhere else, to be checkpointed and resumed; a
        subclass adds its own by extending the dict (any object with ``state_dict``/``load_state_dict``).
        The random generators (``"rng"``) are restored last, wherever they stand.
        """
        parts = {
            "model": self.module,
            "optimizer": self.optimizer,
            "precision": self.precision,
            "schedule": self.learning_rates,
            "state": self.state,
            "step": self.runner,
            "guard": self.guard,
            "spikes": self.spikes,
            "healer": self.healer,
            "micro_batching": self.runner.micro_batching,
            "averaging": self.averaging,
            "callbacks": self.callbacks,
            "loader": self.loader_position,
            "rng": RandomState(self.device),
        }
        return {name: part for name, part in parts.items() if part is not None}

    def evaluated_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights validation measures and a run keeps: the moving average's with ``ema_decay``, else the module's."""
        return self.averaging.weights if self.averaging is not None else self.module.state_dict()

    def state_dict(self) -> dict[str, Any]:
        """The whole state of the run inside ``fit``: every part's ``state_dict()``, by part."""
        self.batch_check.flush()  # device mode: a bad batch since the last read ends the run before a checkpoint
        self.guard.flush(self.global_step)  # device mode: the verdicts of the steps so far are read
        return {name: part.state_dict() for name, part in self.parts().items()}

    def load_state_dict(self, state: dict[str, Any], source: str = "the state") -> None:
        """Put the run back in a :meth:`state_dict`'s state (inside ``fit``; parts it lacks start afresh).

        Raises:
            CheckpointMismatchError: the state is of another architecture or optimizer grouping.
            ConfigError: it was trained in another precision.
        """
        load_parts(self.parts(), state, source)

    def checkpoint(self) -> dict[str, Any]:
        """What a checkpoint file of the run as it stands holds: :meth:`state_dict` with the config and classic keys."""
        world_size = self.distributed.world_size if self.distributed is not None else 1
        weights = self.averaging.weights if self.averaging is not None else None  # inference reads the average
        return checkpoint_of(self.state_dict(), self.state, config=self.config.to_yaml_dict(), world_size=world_size, weights=weights)

    def is_healthy(self) -> bool:
        """Whether the current state is worth returning to: no step of its epoch went bad (reads device verdicts)."""
        self.guard.flush(self.global_step)
        return self.healer.is_good()

    # ------------------------------------------------------------------ helpers

    @property
    def last_grad_norm(self) -> torch.Tensor | None:
        """The last step's gradient norm before clipping, a device tensor (reading it syncs)."""
        return self.runner.last_grad_norm if self.runner is not None else None

    def running_loss(self) -> float:
        """Mean training loss of the finite steps so far in this epoch (syncs the device)."""
        return self.state.running_loss()

    def record_event(self, event: str, level: int = logging.INFO, message: str | None = None, **fields: Any) -> None:
        """Log something that happened (a skipped step, a rollback ...) and keep it in ``trainer.events``
        (and metrics.jsonl: ``{"event": event, "epoch": ..., "step": ..., **fields}``)."""
        self.state.record_event(event, level, message, **fields)

    def _checks_on_device(self) -> bool:
        """Whether non-finite steps are judged on the device, with no per-step sync (reliability/divergence.py)."""
        return judged_on_device(self.device, self.precision.scaler is not None, is_fused(self.optimizer))

    def overrides(self, step: str) -> bool:
        """Whether a subclass computes ``step`` (``"train_step"``, ``"eval_step"``) itself: then the model's
        signature and outputs are the step's business."""
        return getattr(type(self), step) is not getattr(Trainer, step)

    def _setup(self, model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any] | None) -> None:
        """Build the run's parts for ``model`` and the loaders (a fresh state: resuming loads into it)."""
        assemble(self, model, train_loader, val_loader)
