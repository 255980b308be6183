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
from trainwell.data import batches
from trainwell.distributed.elastic import group_restarts
from trainwell.distributed.session import is_primary
from trainwell.files.checkpoint import read_checkpoint
from trainwell.files.rundir import RunPaths
from trainwell.loop import preflight
from trainwell.loop.batch_check import BatchCheck
from trainwell.loop.metric_choice import choose_metrics
from trainwell.loop.optimizers import build_optimizer, scaled_lr
from trainwell.loop.precision import Precision
from trainwell.loop.run_info import log_run_start
from trainwell.loop.schedules import LearningRate, schedule_for
from trainwell.loop.state import TrainState
from trainwell.loop.step import StepRunner
from trainwell.observe.monitor import run_monitor
from trainwell.reliability.divergence import LossSpikeDetector, NonFiniteGuard
from trainwell.reliability.healing import Healer, divergence_advice
from trainwell.reliability.loader_position import LoaderPosition
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
    trainer.steps_per_epoch = preflight.loader_length(train_loader)
    first = _probe(trainer, train_loader, "train_loader")
    if val_loader is not None:
        _probe(trainer, val_loader, "val_loader")
        if trainer.task is not None:  # metrics that do not fit the model fail now, not after an epoch
            choose_metrics(config.metrics, trainer.task)
    else:
        logger.warning(
            "No val_loader given: training without validation, so there is no val_loss, no early "
            "stopping and no best-weight restore. Pass val_loader=... (best practice: always validate)."
        )
    trainer.monitor = run_monitor(config.early_stopping_min_delta, validated=val_loader is not None)
    # Under torchrun the lr is scaled for the global batch (every process's batch together).
    global_batch = session.check_batches(first.samples, trainer.steps_per_epoch) if session else first.samples
    trainer.peak_lr = scaled_lr(config, global_batch)
    trainer.optimizer = build_optimizer(trainer.module, config, trainer.peak_lr)
    trainer._device_checks = trainer._checks_on_device()
    trainer.state.sums_device = trainer.device if trainer._device_checks else None
    # A constant rate without warm-up needs no per-step update; CPU batches need no move.
    per_step = not (config.schedule == "constant" and not config.warmup_fraction)
    trainer.learning_rates = LearningRate(trainer.optimizer, schedule_for(config, trainer.steps_per_epoch), per_step)
    _build_guard(trainer)
    trainer.batch_check = BatchCheck(lambda: trainer.task, on_device=trainer._device_checks)
    trainer.batch_check.first_inputs = batches.sample_shapes(first.inputs)
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
    )
    trainer._move_batches = trainer.device.type != "cpu"
    trainer.loader_position = LoaderPosition(train_loader)
    trainer.callbacks = CallbackList(_callbacks(trainer, val_loader, train_loader))
    trainer.model_summary = preflight.summarize(trainer.module, first.inputs, trainer.device)
    trainer.runner.compiling = config.compile  # the first step carries the compilation: timed apart
    if session is not None:
        trainer.model = session.wrap(trainer.module)
    if config.compile:
        trainer.model = torch.compile(trainer.model)
    trainer.run_info = log_run_start(trainer, first.samples)


def _probe(trainer: Trainer, loader: Iterable[Any], source: str) -> preflight.FirstBatch:
    """Check the loader's first batch against the model; the training batches decide the task."""
    first = preflight.probe(
        trainer.module,
        loader,
        source,
        device=trainer.device,
        precision=trainer.precision,
        task=trainer.task,
        requested_task=trainer.config.task,
        loss_fn=trainer.config.loss_fn,
        custom_step=trainer.overrides_train_step,
    )
    trainer.task = first.task
    return first


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
    if val_loader is not None and (config.early_stopping_patience is not None or config.restore_best_weights):
        builtins.append(
            EarlyStopping(
                patience=config.early_stopping_patience,
                min_delta=config.early_stopping_min_delta,
                restore_best_weights=config.restore_best_weights,
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


def _wants_channels_last(setting: bool | None, module: nn.Module, device: torch.device) -> bool:
    """Channels-last layout: as asked, or (None) on CUDA for models with 2-D convolutions."""
    if setting is not None:
        return setting
    return device.type == "cuda" and any(isinstance(layer, nn.Conv2d) for layer in module.modules())
