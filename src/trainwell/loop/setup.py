"""Building a run's parts: what ``Trainer.fit`` sets up before the first step.

Each part is built here with what it needs (the guard with its advice, the healer with the parts
it repairs, the step runner with the optimizer and precision, the callbacks in the order they
must run); the Trainer then composes their states (:meth:`trainwell.Trainer.state_dict`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.callbacks import Callback, CallbackList, EarlyStopping, ProgressBar
from trainwell.callbacks.checkpointing import Checkpointing
from trainwell.callbacks.process_sync import ProcessSync
from trainwell.callbacks.restart import Restarted
from trainwell.callbacks.run_dir import run_dir_callbacks
from trainwell.config import describe_callable
from trainwell.data import batches
from trainwell.distributed.elastic import group_restarts
from trainwell.distributed.session import is_primary
from trainwell.exceptions import ConfigError
from trainwell.files.checkpoint import check_plain, read_checkpoint
from trainwell.files.rundir import RunPaths
from trainwell.loop import preflight
from trainwell.loop.averaging import WeightAverage, resolve_decay
from trainwell.loop.batch_check import BatchCheck
from trainwell.loop.limits import RunLimits, first_batches
from trainwell.loop.metric_choice import choose_metrics
from trainwell.loop.optimizers import build_optimizer, needs_closure, scaled_lr
from trainwell.loop.precision import Precision
from trainwell.loop.run_info import log_run_start
from trainwell.loop.schedules import learning_rates, patience_start_epoch
from trainwell.loop.state import TrainState
from trainwell.loop.step import StepRunner
from trainwell.observe.monitor import Monitor, resolve_mode, run_monitor
from trainwell.reliability.divergence import LossSpikeDetector, NonFiniteGuard
from trainwell.reliability.healing import Healer, divergence_advice
from trainwell.reliability.loader_position import LoaderPosition
from trainwell.reliability.resume import trainer_state_of, warn_about_changed_options
from trainwell.system import resolve_device, seed_everything

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")


def assemble(trainer: Trainer, model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any] | None) -> None:
    """Build ``trainer``'s parts for ``model`` and the loaders, from its config (a fresh state: resuming loads into it)."""
    config = trainer.config
    trainer.state, trainer.task = TrainState(), None
    if config.seed is not None:
        seed_everything(config.seed)
    trainer.device = trainer.distributed.device if trainer.distributed is not None else resolve_device(config.device)
    trainer.precision = Precision(config.precision, trainer.device)
    trainer._rng_devices = [trainer.device] if trainer.device.type == "cuda" else []
    session = trainer.distributed
    trainer._channels_last = _wants_channels_last(config.channels_last, model, trainer.device)
    if trainer._channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Under FSDP the loop trains a sharded copy; the model passed to fit gets its weights at the end.
    trainer.module = session.place(model) if session is not None else model.to(trainer.device)
    trainer.model = trainer.module
    trainer._parameters = [p for p in trainer.module.parameters() if p.requires_grad]
    if config.overfit_batches is not None:
        if config.limit_train_batches is not None:
            raise ConfigError(
                f"overfit_batches={config.overfit_batches} with limit_train_batches={config.limit_train_batches}: "
                "overfit_batches already says which batches to train on. Set one of them."
            )
        train_loader = first_batches(train_loader, config.overfit_batches)
    val_length = preflight.loader_length(val_loader) if val_loader is not None else None
    trainer.limits = RunLimits(config, preflight.loader_length(train_loader), val_length)
    # Batches per epoch (the progress bar's unit, None for a loader without a length); optimizer
    # steps per epoch (batches / accumulate_grad_batches) are limits.steps_per_epoch.
    trainer.steps_per_epoch = trainer.limits.train_batches
    first = _probe_batches(trainer, train_loader, val_loader)
    if val_loader is None:
        logger.warning(
            "No val_loader given: training without validation, so there is no val_loss, no early "
            "stopping and no best-weight restore. Pass val_loader=... (best practice: always validate)."
        )
    elif trainer.task is not None:  # metrics that do not fit the model fail now, not after an epoch
        choose_metrics(config.metrics, trainer.task)
    trainer.monitor = _run_monitor(trainer, validated=val_loader is not None)
    trainer.target_scaling = _target_scaling(trainer, train_loader, val_loader)
    # Under torchrun the lr is scaled for the global batch (every process's batch together).
    global_batch = session.check_batches(first.samples, trainer.steps_per_epoch) if session else first.samples
    # A step's batch: the loader's (every process's together) times the batches accumulated into it.
    trainer.peak_lr = scaled_lr(config, global_batch * config.accumulate_grad_batches)
    trainer.optimizer = build_optimizer(trainer.module, config, trainer.peak_lr)
    if callable(config.optimizer):
        trainer.peak_lr = _factory_lr(config, trainer.optimizer)
    _check_closure(config, trainer.optimizer, trainer.precision)
    trainer._device_checks = trainer._checks_on_device()
    trainer.state.sums_device = trainer.device if trainer._device_checks else None
    limits = trainer.limits
    trainer.learning_rates = learning_rates(
        config, trainer.optimizer, limits.total_steps, limits.steps_per_epoch, trainer.monitor.metric
    )
    if config.run_dir is not None and config.save_checkpoints:
        _check_checkpointable(config, trainer.learning_rates)
    _build_guard(trainer)
    trainer.batch_check = BatchCheck(lambda: trainer.task, on_device=trainer._device_checks)
    trainer.batch_check.first_inputs = batches.sample_shapes(first.inputs)
    # After every change of the module's layout: the average reads its tensors in place.
    decay = resolve_decay(config.ema_decay, trainer.module, config.schedule)
    trainer.averaging = WeightAverage(trainer.module, decay) if decay is not None else None
    trainer.runner = StepRunner(
        trainer.train_step,
        trainer.optimizer,
        trainer.precision,
        trainer._parameters,
        state=trainer.state,
        guard=trainer.guard,
        spikes=trainer.spikes,
        max_grad_norm=config.max_grad_norm,
        on_device=trainer._device_checks,
        session=session,
        # A forward that failed leaves FSDP's state of the step undefined: no retry in pieces there.
        split_on_oom=config.split_batch_on_oom and (session is None or session.sharding is None),
        batch_check=trainer.batch_check,
        accumulate=config.accumulate_grad_batches,
        averaging=trainer.averaging,
    )
    trainer._move_batches = trainer.device.type != "cpu"
    trainer.loader_position = LoaderPosition(train_loader)
    trainer.callbacks = CallbackList(_callbacks(trainer, val_loader, train_loader))
    if trainer.overrides("train_step"):
        # The user's step runs once on the first batch, with every part built, as in training.
        trainer.model_summary = preflight.check_train_step(
            trainer.train_step,
            first,
            module=trainer.module,
            owner=trainer,
            device=trainer.device,
            precision=trainer.precision,
        )
    else:
        trainer.model_summary = preflight.summarize(trainer.module, first.inputs, trainer.device)
    trainer.runner.compiling = config.compile  # the first step carries the compilation: timed apart
    if session is not None:
        trainer.model = session.wrap(trainer.module)
    if config.compile:
        trainer.model = torch.compile(trainer.model)
    trainer.run_info = log_run_start(trainer, first.samples, first.target_stats)
    limits.warn_unreachable(logger)


def resume_from(trainer: Trainer, path: Path, checkpoint: dict[str, Any]) -> None:
    """Put ``trainer``'s freshly built parts in the state of ``checkpoint`` (read from ``path``)."""
    source = f"checkpoint '{path}'"
    parts = trainer_state_of(checkpoint, source)
    warn_about_changed_options(checkpoint.get("config") or {}, trainer.config.to_yaml_dict())
    trainer.load_state_dict(parts, source)
    batch, epoch = trainer.batch_in_epoch, trainer.epoch
    where = f"epoch {epoch} after {batch} of its batches" if batch is not None else f"the end of epoch {epoch}"
    trainer.record_event(
        "resumed", logging.INFO, f"Resumed from {path} at step {trainer.global_step} ({where}).", checkpoint=str(path)
    )


def _probe_batches(
    trainer: Trainer, train_loader: Iterable[Any], val_loader: Iterable[Any] | None
) -> preflight.FirstBatch:
    """Check the first batches: against the model for the built-in steps, against the user's steps otherwise.

    With the built-in ``train_step`` the training batch decides the task; with the user's, the
    model's signature and outputs are the step's business, and the validation batch decides it
    (for the built-in ``eval_step``, or for the outputs the user's returns), else the model's
    outputs on the training batch where ``model(inputs)`` works and they fit one.
    """
    if not trainer.overrides("train_step"):
        first = _probe(trainer, train_loader, "train_loader")
        if val_loader is not None:
            _probe_validation(trainer, val_loader)
        return first
    if val_loader is not None:
        _probe_validation(trainer, val_loader)
    if trainer.task is None:
        # For a step that asks self.task (a variation of the built-in one): decided from the model's
        # outputs where model(inputs) works and they fit a task; else the run has none.
        try:
            return _probe(trainer, train_loader, "train_loader")
        except ConfigError:
            raise  # the options contradict each other (a task against the loss), whatever the step
        except Exception as error:  # noqa: BLE001 - a model called its own way may fail in any way here
            logger.debug("No task from the training batches (the step's own business): %s", error)
    return preflight.first_of(train_loader, trainer.device, trainer.task)


def _probe_validation(trainer: Trainer, val_loader: Iterable[Any]) -> None:
    if not trainer.overrides("eval_step"):
        _probe(trainer, val_loader, "val_loader")
        return
    trainer.task = preflight.check_eval_step(
        trainer.eval_step,
        val_loader,
        module=trainer.module,
        owner=trainer,
        device=trainer.device,
        precision=trainer.precision,
        task=trainer.task,
        requested_task=trainer.config.task,
        loss_fn=trainer.config.loss_fn,
    )


def _probe(trainer: Trainer, loader: Iterable[Any], source: str) -> preflight.FirstBatch:
    """Check the loader's first batch against the model (the built-in step calls ``model(inputs)``); decide the task."""
    first = preflight.probe(
        trainer.module,
        loader,
        source,
        device=trainer.device,
        precision=trainer.precision,
        task=trainer.task,
        requested_task=trainer.config.task,
        loss_fn=trainer.config.loss_fn,
    )
    trainer.task = first.task
    return first


def _run_monitor(trainer: Trainer, validated: bool) -> Monitor:
    """The run's one monitor: the config's ``monitor``/``mode``, or the user's EarlyStopping (they must agree)."""
    config = trainer.config
    stoppers = [c.monitor for c in trainer.user_callbacks if isinstance(c, EarlyStopping)]
    asked = [(config.monitor, resolve_mode(config.monitor, config.mode))] if config.monitor is not None else []
    choices = {(m.metric, m.mode) for m in stoppers} | set(asked)
    if len(choices) > 1:
        shown = ", ".join(f"{metric} ({mode})" for metric, mode in sorted(choices))
        raise ConfigError(
            f"two monitors for one run: {shown} (from monitor=/mode= and EarlyStopping callbacks). The best epoch, "
            "the restored weights and the best checkpoint follow one metric: give them all the same monitor and mode."
        )
    if stoppers:
        monitor = Monitor(stoppers[0].metric, stoppers[0].mode, stoppers[0].min_delta)
    else:
        monitor = run_monitor(config.early_stopping_min_delta, validated, config.monitor, config.mode)
    if monitor.metric.startswith("val_") and not validated:
        raise ConfigError(
            f"monitor={monitor.metric!r} is a validation metric, but no val_loader was given: pass val_loader=..., "
            "or monitor a training metric (monitor='train_loss')."
        )
    guessed = config.mode == "auto" and config.monitor is not None and monitor.mode == "min"
    if guessed and monitor.metric not in ("val_loss", "train_loss"):
        logger.info("monitor=%r: lower is taken as better (mode='auto'); set mode='max' if higher is.", monitor.metric)
    return monitor


def _factory_lr(config: Any, optimizer: torch.optim.Optimizer) -> float:
    """The lr an optimizer factory chose, saying which options it makes moot."""
    moot = [
        name for name in ("lr", "weight_decay", "momentum", "decay_bias_and_norm") if name in config.model_fields_set
    ]
    lr = optimizer.param_groups[0]["lr"]
    if moot:
        logger.warning(
            "optimizer=%s sets its own hyperparameters: %s apply to the built-in optimizers only and are not "
            "used (the optimizer's lr is %.3g).",
            type(optimizer).__name__,
            ", ".join(f"{name}={getattr(config, name)!r}" for name in moot),
            lr,
        )
    return float(lr)


def _check_closure(config: Any, optimizer: torch.optim.Optimizer, precision: Precision) -> None:
    """Refuse what an optimizer that steps with a closure (LBFGS) cannot do."""
    if not needs_closure(optimizer):
        return
    name = type(optimizer).__name__
    if precision.scaler is not None:
        raise ConfigError(
            f"optimizer={name} steps with a closure, which fp16's GradScaler cannot scale: use precision='bf16' "
            "or 'fp32'."
        )
    if config.accumulate_grad_batches > 1:
        raise ConfigError(
            f"accumulate_grad_batches={config.accumulate_grad_batches} with optimizer={name}: a closure optimizer "
            "re-evaluates its batch several times per step. Use a larger batch instead (accumulate_grad_batches=1)."
        )


def _check_checkpointable(config: Any, schedule: Any) -> None:
    """Refuse, before training, a scheduler whose state a checkpoint cannot hold."""
    try:
        check_plain(schedule.state_dict(), "the schedule's state")
    except TypeError as error:
        raise ConfigError(
            f"schedule={describe_callable(config.schedule)} builds a scheduler whose state_dict() a checkpoint cannot "
            f"hold: {error} "
            "Use a scheduler of plain state (StepLR, LambdaLR with a function, ReduceLROnPlateau ...), or "
            "save_checkpoints=False."
        ) from error


def _build_guard(trainer: Trainer) -> None:
    """The divergence machinery: the spike detector (or None), the guard and the healer it calls."""
    config = trainer.config
    trainer.spikes = (
        LossSpikeDetector(config.loss_spike_factor, device=trainer.device)
        if config.loss_spike_factor is not None
        else None
    )
    trainer.guard = NonFiniteGuard(
        config.max_nonfinite_steps,
        # Built when the error is raised, so that it quotes the lr after any rollback's cuts.
        advice=lambda: divergence_advice(config.max_grad_norm, trainer.learning_rates.peak_lrs[0], trainer.precision.name),
        on_skip=lambda message, *args, skipped: trainer.record_event(
            "nonfinite_skip", logging.WARNING, message % args, skipped=skipped
        ),
        on_diverged=lambda run, step: trainer.healer.on_diverged(run, step),
        bad="non-finite or spiking" if trainer.spikes is not None else "non-finite",
    )
    checkpoints = (
        RunPaths(Path(config.run_dir)).checkpoints if config.run_dir is not None and config.save_checkpoints else None
    )
    trainer.healer = Healer(
        config.max_rollbacks,
        config.rollback_lr_factor,
        checkpoints,
        module=trainer.module,
        optimizer=trainer.optimizer,
        precision=trainer.precision,
        learning_rates=trainer.learning_rates,
        state=trainer.state,
        guard=trainer.guard,
        monitor=trainer.monitor,
        peak_lr=trainer.peak_lr,
        read=trainer.distributed.read_checkpoint if trainer.distributed is not None else read_checkpoint,
    )


def _callbacks(trainer: Trainer, val_loader: Iterable[Any] | None, train_loader: Iterable[Any]) -> list[Callback]:
    """The built-in callbacks, the user's, then those that must see every other's state (checkpointing last)."""
    config, session = trainer.config, trainer.distributed
    restarts = group_restarts(session)
    builtins: list[Callback] = [Restarted(restarts)] if restarts else []
    # An EarlyStopping of the user's takes the built-in one's place (the run's monitor is its).
    theirs = any(isinstance(callback, EarlyStopping) for callback in trainer.user_callbacks)
    watched = val_loader is not None or config.monitor is not None
    if watched and not theirs and (config.early_stopping_patience is not None or config.restore_best_weights):
        monitor = trainer.monitor
        builtins.append(
            EarlyStopping(
                monitor.metric,
                monitor.mode,
                patience=config.early_stopping_patience,
                min_delta=monitor.min_delta,
                restore_best_weights=config.restore_best_weights,
                start_epoch=patience_start_epoch(config, trainer.limits.steps_per_epoch, trainer.limits.total_steps),
            )
        )
    # Under torchrun, rank 0 alone shows progress and writes the run directory.
    if config.progress and is_primary(session):
        builtins.append(ProgressBar())
    if config.run_dir is not None:
        builtins += (
            run_dir_callbacks(Path(config.run_dir), config.loggers, trainer.monitor, config.mlflow_tracking_uri) if is_primary(session) else []
        )
    elif config.loggers:
        logger.warning(
            "loggers=%s write into run_dir, which is not set: nothing is logged. Set run_dir=...", config.loggers
        )
    writer = session.checkpoint_writer() if session is not None else None  # FSDP: every process writes its shards
    trainer.checkpointing = Checkpointing.for_config(config, trainer.monitor, trainer.healer.on_good_checkpoint, writer)
    last = [trainer.checkpointing] if trainer.checkpointing is not None else []
    if session is not None:
        # After every callback that may set should_stop, before the checkpoint that records it.
        last.insert(0, ProcessSync(session, trainer._signals, train_loader))
    return builtins + trainer.user_callbacks + last


def _target_scaling(trainer: Trainer, train_loader: Any, val_loader: Any) -> Any:
    """The scaling of standardised regression targets that the loaders carry (None otherwise)."""
    if trainer.task is None or trainer.task.name != "regression":
        return None
    return getattr(val_loader, "target_scaling", None) or getattr(train_loader, "target_scaling", None)


def _wants_channels_last(setting: bool | None, module: nn.Module, device: torch.device) -> bool:
    """Channels-last layout: as asked, or (None) on CUDA for models with 2-D convolutions."""
    if setting is not None:
        return setting
    return device.type == "cuda" and any(isinstance(layer, nn.Conv2d) for layer in module.modules())
