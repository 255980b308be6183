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
from trainwell.callbacks.run_dir import run_dir_callbacks
from trainwell.distributed.session import is_primary
from trainwell.files.atomic import write_text
from trainwell.files.rundir import RunPaths
from trainwell.loop import preflight
from trainwell.loop.averaging import WeightAverage, resolve_decay
from trainwell.loop.optimizers import build_optimizer, scaled_lr
from trainwell.loop.precision import Precision
from trainwell.loop.run_info import log_run_start
from trainwell.loop.schedules import LearningRate, patience_start_epoch, schedule_for
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
    trainer.module = model.to(trainer.device)
    trainer._channels_last = _wants_channels_last(config.channels_last, trainer.module, trainer.device)
    if trainer._channels_last:
        trainer.module = trainer.module.to(memory_format=torch.channels_last)
    trainer.model = trainer.module
    trainer._parameters = [p for p in trainer.module.parameters() if p.requires_grad]
    trainer.steps_per_epoch = preflight.loader_length(train_loader)
    first = _probe(trainer, train_loader, "train_loader")
    trainer.target_stats = first.target_stats
    if val_loader is not None:
        _probe(trainer, val_loader, "val_loader")
    else:
        logger.warning(
            "No val_loader given: training without validation, so there is no val_loss, no early "
            "stopping and no best-weight restore. Pass val_loader=... (best practice: always validate)."
        )
    trainer.monitor = run_monitor(config.early_stopping_min_delta, validated=val_loader is not None)
    trainer.target_scaling = _target_scaling(trainer, train_loader, val_loader)
    # Under torchrun the lr is scaled for the global batch (every process's batch together).
    session = trainer.distributed
    global_batch = session.check_batches(first.samples, trainer.steps_per_epoch) if session else first.samples
    trainer.peak_lr = scaled_lr(config, global_batch)
    trainer.optimizer = build_optimizer(trainer.module, config, trainer.peak_lr)
    trainer._device_checks = trainer._checks_on_device()
    trainer.state.sums_device = trainer.device if trainer._device_checks else None
    # A constant rate without warm-up needs no per-step update; CPU batches need no move.
    per_step = not (config.schedule == "constant" and not config.warmup_fraction)
    trainer.learning_rates = LearningRate(trainer.optimizer, schedule_for(config, trainer.steps_per_epoch), per_step)
    _build_guard(trainer)
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
        split_on_oom=config.split_batch_on_oom,
        averaging=trainer.averaging,
    )
    trainer._move_batches = trainer.device.type != "cpu"
    trainer.loader_position = LoaderPosition(train_loader)
    trainer.callbacks = CallbackList(_callbacks(trainer, val_loader, train_loader))
    trainer.model_summary = preflight.summarize(trainer.module, first.inputs, trainer.device)
    trainer._compiling, trainer._compile_seconds = config.compile, 0.0
    if session is not None:
        trainer.model = session.wrap(trainer.module)
    if config.compile:
        trainer.model = torch.compile(trainer.model)
    trainer.run_info = log_run_start(trainer, first.samples)
    if config.run_dir is not None and is_primary(session):
        write_text(RunPaths(Path(config.run_dir)).model_summary, trainer.model_summary + "\n")


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
        advice=divergence_advice(config.max_grad_norm, trainer.peak_lr, trainer.precision.name),
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
    )


def _callbacks(trainer: Trainer, val_loader: Iterable[Any] | None, train_loader: Iterable[Any]) -> list[Callback]:
    """The built-in callbacks, the user's, then those that must see every other's state (checkpointing last)."""
    config, session = trainer.config, trainer.distributed
    builtins: list[Callback] = []
    if val_loader is not None and (config.early_stopping_patience is not None or config.restore_best_weights):
        builtins.append(
            EarlyStopping(
                patience=config.early_stopping_patience,
                min_delta=config.early_stopping_min_delta,
                restore_best_weights=config.restore_best_weights,
                start_epoch=patience_start_epoch(config, trainer.steps_per_epoch),
            )
        )
    # Under torchrun, rank 0 alone shows progress and writes the run directory.
    if config.progress and is_primary(session):
        builtins.append(ProgressBar())
    if config.run_dir is not None:
        builtins += (
            run_dir_callbacks(Path(config.run_dir), config.loggers, trainer.monitor) if is_primary(session) else []
        )
    elif config.loggers:
        logger.warning(
            "loggers=%s write into run_dir, which is not set: nothing is logged. Set run_dir=...", config.loggers
        )
    trainer.checkpointing = Checkpointing.for_config(config, trainer.monitor, trainer.healer.on_good_checkpoint)
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
