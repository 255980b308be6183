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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.callbacks import Callback, CallbackList, EarlyStopping
from trainwell.callbacks.checkpointing import Checkpointing
from trainwell.config import TrainConfig
from trainwell.data import batches
from trainwell.distributed.session import Session, is_primary, joined, on_primary, start_in
from trainwell.exceptions import ConfigError
from trainwell.files.rundir import RunPaths, prepare_run_dir
from trainwell.loop import preflight
from trainwell.loop.averaging import WeightAverage
from trainwell.loop.optimizers import is_fused
from trainwell.loop.precision import Precision
from trainwell.loop.result import FitResult
from trainwell.loop.setup import assemble
from trainwell.loop.state import FromState, TrainState, load_parts
from trainwell.loop.step import StepRunner, compiled_first_step
from trainwell.loop.tasks import Task
from trainwell.loop.validation import evaluation_pass
from trainwell.observe.logs import format_epoch, log_to_file, setup_console_logging
from trainwell.observe.monitor import Monitor
from trainwell.reliability.divergence import judged_on_device
from trainwell.reliability.preemption import SharedSignalCatcher, SignalCatcher, stop_on_signal
from trainwell.reliability.resume import checkpoint_of, continues_in, trainer_state_of, warn_about_changed_options
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
        monitor: Which epoch is best (:class:`~trainwell.observe.monitor.Monitor`: val_loss, or
            train_loss without validation): ``FitResult.best``, the best checkpoint, the rollback target.
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
            under torchrun: join the processes, shard the loaders, wrap the model in DDP (distributed/)
            build the parts: optimizer, precision, schedule, guard + healer, step runner, callbacks
            if resuming: load_state_dict(checkpoint)         # every part's state, RNGs last
            while epochs remain and not should_stop:
                for batch in train_loader (from the saved batch when resuming inside the epoch):
                    lr = peak_lr * schedule(global_step)
                    loss = step(batch)                          # loop/step.py: autocast, train_step,
                                                                # backward, clip, judge, optimizer step
                    non-finite loss/grad -> update skipped; K in a row -> roll back, lr x 0.5;
                        M rollbacks -> DivergenceError          # reliability/healing.py
                    every checkpoint_every_steps: checkpoint; SIGTERM/SIGINT: checkpoint and stop
                metrics = evaluate(val_loader)                # loop/validation.py: val_loss, val_accuracy ...
                callbacks.on_epoch_end(metrics)               # log, metrics.jsonl, early stopping, checkpoint
            restore the best weights (early stopping); return FitResult

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
        with joined(self.config) as session:
            self.distributed = session
            self._signals = SignalCatcher() if session is None else SharedSignalCatcher()
            if session is not None:
                self.config, train_loader, val_loader = session.share(self.config, train_loader, val_loader)
            try:
                return self._fit_in_run_dir(model, train_loader, val_loader, resume)
            finally:
                if session is not None:
                    self.model = self.module  # the DDP wrapper goes with the process group

    def _fit_in_run_dir(self, model: nn.Module, train_loader: Any, val_loader: Any, resume: Any) -> FitResult:
        session = self.distributed
        if self.config.run_dir is None:
            return self._fit(model, train_loader, val_loader, start_in(session, resume, None))
        run_dir = Path(self.config.run_dir)
        resumes = continues_in(resume, run_dir)
        on_primary(session, prepare_run_dir, run_dir, self.config.to_yaml_dict(), resuming=resumes)
        # SIGTERM/SIGINT stop training after a checkpoint only where there are checkpoints to write.
        signals = self._signals if self.config.save_checkpoints else contextlib.nullcontext()
        log_file = log_to_file(RunPaths(run_dir).log) if is_primary(session) else contextlib.nullcontext()
        with log_file, signals:
            return self._fit(model, train_loader, val_loader, start_in(session, resume, run_dir))

    def _fit(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        val_loader: Iterable[Any] | None,
        checkpoint: tuple[Path, dict[str, Any]] | None = None,
    ) -> FitResult:
        self._setup(model, train_loader, val_loader)
        if checkpoint is not None:
            self._resume_from(*checkpoint)
        self.healer.remember()  # the first good state to roll back to
        state = self.state
        try:
            self.callbacks.call("on_train_begin", self)
            while state.completed_epochs < self.config.epochs and not state.should_stop:
                if state.batch_in_epoch is None:  # else a resumed epoch goes on from its saved batch
                    state.begin_epoch(self.guard.skipped)
                self.callbacks.call("on_epoch_begin", self, epoch=state.epoch)
                started = time.perf_counter()
                row = {"epoch": state.epoch, **self._train_epoch(train_loader)}
                if val_loader is not None:
                    val_metrics = self._validate(val_loader)
                    self.callbacks.call("on_eval_end", self, metrics=val_metrics)
                    row.update(val_metrics)
                row.update(memory_metrics(self.device))
                row["epoch_time_s"] = time.perf_counter() - started
                state.history.append(row)
                logger.info(format_epoch(row, self.config.epochs))
                self.callbacks.call("on_epoch_end", self, epoch=state.epoch, metrics=row)
                self.healer.on_epoch_end()
                if self._signals.received is not None:
                    self._stop_on_signal()
            if self.averaging is not None:
                self.averaging.copy_to_module()  # the model is the average (early stopping may restore a better one)
            self.callbacks.call("on_train_end", self)
        except BaseException as error:
            self.callbacks.call("on_exception", self, error=error)
            raise
        return self._result()

    def _train_epoch(self, train_loader: Iterable[Any]) -> dict[str, Any]:
        """One pass over the training data (the rest of it, when resuming inside the epoch); returns its metrics."""
        self.model.train()
        set_epoch = getattr(train_loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch - 1)
        reset_peak_memory(self.device)
        state, log_every = self.state, self.config.log_every_steps
        first = state.batch_in_epoch
        started = time.perf_counter()
        for batch_index, batch in enumerate(self.loader_position.begin_epoch(first), start=first):
            self.callbacks.on_batch_begin(self, batch_index)
            inputs, targets = batches.split_batch(batch)
            state.epoch_samples += batches.count_samples(inputs)
            if self._move_batches:
                inputs, targets = batches.move_to((inputs, targets), self.device, non_blocking=True)
            if self._channels_last:
                inputs = batches.channels_last(inputs)
            self.learning_rates.before_step(state.global_step)
            if self._compiling:  # the first step under torch.compile carries the compilation: timed apart
                loss, self._compile_seconds = compiled_first_step(self.runner, inputs, targets)
                self._compiling = False
            else:
                loss = self.runner(inputs, targets)
            state.global_step += 1
            state.batch_in_epoch = batch_index + 1
            if self._device_checks and state.global_step % log_every == 0:
                self.guard.flush(state.global_step)
            self.callbacks.on_batch_end(self, batch_index, loss)
            if self._signals.received is not None:
                self._stop_on_signal()
        # Compilation is reported on its own (a "compile" event), not as slow training.
        elapsed = time.perf_counter() - started - self._compile_seconds
        self._compile_seconds = 0.0
        self.guard.flush(state.global_step)
        state.batch_in_epoch = None
        samples = state.epoch_samples * (self.distributed.world_size if self.distributed is not None else 1)
        return {
            "train_loss": self.running_loss(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": samples / elapsed if elapsed > 0 else float("nan"),
            "nonfinite_steps": self.guard.skipped - state.skipped_at_epoch_start,
        }

    def _validate(self, val_loader: Iterable[Any]) -> dict[str, float]:
        # Validation must not change training's randomness (a DataLoader draws a seed from the
        # global RNG whenever it is iterated): with or without it, training sees the same dropout
        # masks and batch order.
        averaged = self.averaging.applied() if self.averaging is not None else contextlib.nullcontext()
        with torch.random.fork_rng(devices=self._rng_devices), averaged:
            if self.distributed is None:
                return self.evaluate(val_loader)
            # Several processes validate on the plain module, with rank 0's buffers (distributed/session.py).
            self.distributed.broadcast_buffers(self.module)
            wrapped, self.model = self.model, self.module
            try:
                return self.evaluate(val_loader)
            finally:
                self.model = wrapped

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
        return {"loss": self.task.loss(outputs, targets)}

    def eval_step(self, batch: tuple[Any, Any]) -> dict[str, Any]:
        """What one validation step computes: ``{"loss", "outputs", "targets"}`` for one batch."""
        inputs, targets = batch
        outputs = batches.forward(self.model, inputs)
        return {"loss": self.task.loss(outputs, targets), "outputs": outputs, "targets": targets}

    def evaluate(self, loader: Iterable[Any]) -> dict[str, float]:
        """Mean loss and task metrics over ``loader``, weighted by batch size (no per-batch host sync).

        Returns:
            ``val_loss`` with ``val_accuracy``, ``val_f1``, ``val_precision``, ``val_recall``
            (classification) or ``val_mae``, ``val_rmse``, ``val_r2`` (regression); the pass's
            predictions stay in ``trainer.last_validation`` (with a confusion matrix).
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
            target_scaling=self.target_scaling,
        )
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

    def _resume_from(self, path: Path, checkpoint: dict[str, Any]) -> None:
        source = f"checkpoint '{path}'"
        parts = trainer_state_of(checkpoint, source)
        warn_about_changed_options(checkpoint.get("config") or {}, self.config.to_yaml_dict())
        self.load_state_dict(parts, source)
        batch, epoch = self.batch_in_epoch, self.epoch
        where = f"epoch {epoch} after {batch} of its batches" if batch is not None else f"the end of epoch {epoch}"
        self.record_event(
            "resumed", logging.INFO, f"Resumed from {path} at step {self.global_step} ({where}).", checkpoint=str(path)
        )

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

    @property
    def overrides_train_step(self) -> bool:
        """Whether a subclass computes the step itself (then the model's outputs are its business)."""
        return type(self).train_step is not Trainer.train_step

    def _checks_on_device(self) -> bool:
        """Whether non-finite steps are judged on the device, with no per-step sync (reliability/divergence.py)."""
        return judged_on_device(self.device, self.precision.scaler is not None, is_fused(self.optimizer))

    def _setup(self, model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any] | None) -> None:
        """Build the run's parts for ``model`` and the loaders (a fresh state: resuming loads into it)."""
        assemble(self, model, train_loader, val_loader)

    def _result(self) -> FitResult:
        index = self.monitor.best_index([row.get(self.monitor.metric) for row in self.history])
        best = self.history[index] if index is not None else None
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
