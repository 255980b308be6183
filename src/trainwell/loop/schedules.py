"""Learning-rate schedules: the built-in ones as pure functions of the step count, and torch schedulers of your own.

The Trainer asks ``schedule(step)`` for a multiplier of the peak learning rate before every
optimizer step. A schedule holds no state that changes during training, so resuming at step
``k`` needs nothing but ``k``. A scheduler of the user's (``schedule=`` a factory
``optimizer -> torch LR scheduler``) is stepped as in torch's own loop instead, after each step or
each epoch (:class:`SchedulerSteps`), and its state is checkpointed.

Either way a rate that something else set (a callback writing ``param_groups[i]["lr"]``) is not
silently overwritten: it is taken as the group's new rate, and the schedule goes on from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import CheckpointMismatchError, ConfigError, DataError

if TYPE_CHECKING:
    import torch

    from trainwell.config import TrainConfig

# The one-cycle policy starts at peak/25 and ends at peak/(25 * 1e4), as in Smith & Topin (2019)
# and torch.optim.lr_scheduler.OneCycleLR's defaults, so results carry over from either.
ONECYCLE_INITIAL_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4

logger = logging.getLogger("trainwell")

LRSchedule = Callable[[int], float]


def _cosine_between(start: float, end: float, progress: float) -> float:
    """Cosine interpolation from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def onecycle(total_steps: int, warmup_fraction: float = 0.3) -> LRSchedule:
    """One-cycle: cosine rise from peak/25 to the peak, then cosine decay to peak/2.5e5.

    Matches ``torch.optim.lr_scheduler.OneCycleLR`` (``anneal_strategy="cos"``, two phases) step
    for step, as a function instead of an object.

    Args:
        total_steps: Optimizer steps in the whole run.
        warmup_fraction: Share of the steps spent rising to the peak (OneCycleLR's ``pct_start``).

    Example:
        >>> schedule = onecycle(total_steps=100)
        >>> round(schedule(0), 3), schedule(29), round(schedule(99), 8)
        (0.04, 1.0, 4e-06)
    """
    _check_total(total_steps)
    initial = 1.0 / ONECYCLE_INITIAL_DIV
    final = initial / ONECYCLE_FINAL_DIV
    peak_step = float(warmup_fraction * total_steps) - 1
    last_step = float(total_steps - 1)

    def schedule(step: int) -> float:
        if step <= peak_step:
            return _cosine_between(initial, 1.0, step / peak_step if peak_step > 0 else 1.0)
        span = last_step - peak_step
        return _cosine_between(1.0, final, (step - peak_step) / span if span > 0 else 1.0)

    return schedule


def cosine(total_steps: int, warmup_fraction: float = 0.0) -> LRSchedule:
    """Linear warm-up (if any) to the peak, then cosine decay towards zero.

    The decay is spaced so that the last step still trains with a small positive rate instead
    of wasting itself at exactly zero.

    Example:
        >>> schedule = cosine(total_steps=10)
        >>> schedule(0), round(schedule(5), 3), round(schedule(9), 3)
        (1.0, 0.5, 0.024)
    """
    _check_total(total_steps)
    warmup_steps = int(warmup_fraction * total_steps)
    decay_steps = total_steps - warmup_steps

    def schedule(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return _cosine_between(1.0, 0.0, (step - warmup_steps) / decay_steps)

    return schedule


def constant(total_steps: int, warmup_fraction: float = 0.0) -> LRSchedule:
    """The peak rate throughout, after a linear warm-up if ``warmup_fraction`` > 0."""
    _check_total(total_steps)
    warmup_steps = int(warmup_fraction * total_steps)

    def schedule(step: int) -> float:
        return (step + 1) / warmup_steps if step < warmup_steps else 1.0

    return schedule


SCHEDULES: dict[str, Callable[[int, float], LRSchedule]] = {
    "onecycle": onecycle,
    "cosine": cosine,
    "constant": constant,
}


def build_schedule(name: str, total_steps: int, warmup_fraction: float) -> LRSchedule:
    """The schedule called ``name`` for a run of ``total_steps`` optimizer steps."""
    return SCHEDULES[name](total_steps, warmup_fraction)


def schedule_for(config: TrainConfig, total_steps: int | None) -> LRSchedule:
    """The config's built-in schedule over the whole run of ``total_steps`` optimizer steps.

    Args:
        config: The training config (``schedule``, ``warmup_fraction``).
        total_steps: The run's planned optimizer steps (:attr:`trainwell.loop.limits.RunLimits.total_steps`),
            or None when unknown (a loader without a length and no ``max_steps``).

    Raises:
        DataError: a schedule that needs the run's length, for a loader without one.
    """
    if total_steps is None:
        if config.schedule != "constant" or config.warmup_fraction:
            raise DataError(
                f"train_loader has no len(), which schedule={config.schedule!r} needs to plan the run. "
                "Give the loader a __len__ (a DataLoader over a map-style dataset, a list), set max_steps, or "
                "use schedule='constant' with warmup_fraction=0."
            )
        return lambda step: 1.0
    return build_schedule(config.schedule, total_steps, config.warmup_fraction)


def learning_rates(
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    total_steps: int | None,
    steps_per_epoch: int | None,
    monitor: str,
) -> LearningRate | SchedulerSteps:
    """The schedule part of a run: the built-in schedule the config names, or its factory's scheduler.

    Args:
        config: ``schedule``, ``warmup_fraction``, ``schedule_interval``.
        optimizer: The run's optimizer.
        total_steps: The run's planned optimizer steps, or None.
        steps_per_epoch: Optimizer steps per epoch, or None.
        monitor: The run's monitored metric, on which ReduceLROnPlateau steps.

    Raises:
        ConfigError: the factory does not return a scheduler of ``optimizer``, or asks for a warm-up.
        DataError: a built-in schedule that needs the run's length, for a loader without one.
    """
    if callable(config.schedule):
        return SchedulerSteps(optimizer, _scheduler_from(config, optimizer), config.schedule_interval, monitor)
    # A constant rate without warm-up needs no per-step update.
    per_step = not (config.schedule == "constant" and not config.warmup_fraction)
    epoch_steps = steps_per_epoch if config.schedule_interval == "epoch" else None
    return LearningRate(optimizer, schedule_for(config, total_steps), per_step, epoch_steps)


# Early stopping's patience counts from the first epoch that ends, after the warm-up, with the lr
# at most this share of its peak (README, "What is measured": with it, --epochs 40 never ended
# worse than --epochs 10 on digits).
ANNEALED_SHARE = 0.5


def patience_start_epoch(config: TrainConfig, steps_per_epoch: int | None, total_steps: int | None) -> int:
    """The first epoch whose lack of improvement counts against early stopping's patience.

    Under a schedule that anneals (one-cycle, cosine), a validation loss that stalls while the lr
    is still high says little about where annealing will take it: stopping then ends the run with
    a model that never trained at a low lr, worse than a shorter run of the same schedule. So
    patience counts from the first epoch that ends after the warm-up with the lr at most
    ``ANNEALED_SHARE`` of its peak; earlier epochs still set the best weights. A constant rate, a
    scheduler of the user's, or a run of unknown length counts from epoch 1.

    Args:
        config: ``schedule`` and ``warmup_fraction``.
        steps_per_epoch: Optimizer steps per epoch, or None when unknown.
        total_steps: The run's planned optimizer steps (the built-in schedule spans them), or None.

    Example:
        >>> from trainwell.config import TrainConfig
        >>> patience_start_epoch(TrainConfig(schedule="onecycle", epochs=40), 23, 23 * 40)
        27
        >>> patience_start_epoch(TrainConfig(schedule="constant", epochs=40), 23, 23 * 40)
        1
    """
    if not isinstance(config.schedule, str) or config.schedule == "constant" or not steps_per_epoch or not total_steps:
        return 1
    schedule = schedule_for(config, total_steps)
    warmup_steps = config.warmup_fraction * total_steps
    epochs = -(-total_steps // steps_per_epoch)
    for epoch in range(1, epochs + 1):
        last_step = min(epoch * steps_per_epoch, total_steps) - 1
        if last_step >= warmup_steps and schedule(last_step) <= ANNEALED_SHARE:
            return epoch
    return epochs


class LearningRate:
    """The optimizer's learning rates over the run: each group's peak rate times the schedule at the step.

    The peak rates start as the optimizer's (one per parameter group) and change only when a
    rollback cuts them, or when something else (a callback) set a group's rate since the last
    step: that rate is kept, and the group's peak becomes the one that gives it at this step, so
    the schedule's shape goes on from the rate that was set. They are this part's state in a
    checkpoint, with the rates last set; the schedule is a pure function of the step.

    Args:
        optimizer: The optimizer whose groups' ``lr`` is set.
        schedule: The multiplier of the peak rate at each step.
        per_step: Whether the rate changes from step to step (False for a constant rate without
            warm-up, which then costs nothing per step and leaves rates set by others alone).
        epoch_steps: With ``schedule_interval="epoch"``, the optimizer steps per epoch: the rate is
            held for an epoch at the value of its first step. None changes it every step.

    Example:
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> rates = LearningRate(optimizer, cosine(total_steps=10), per_step=True)
        >>> rates.before_step(5)
        >>> round(optimizer.param_groups[0]["lr"], 3)
        0.05
        >>> rates.cut(0.5, step=5)
        >>> round(optimizer.param_groups[0]["lr"], 3), rates.peak_lrs
        (0.025, [0.05])
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, per_step: bool, epoch_steps: int | None = None
    ) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.per_step = per_step
        self.epoch_steps = epoch_steps
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]
        self.applied: list[float] | None = None

    def before_step(self, step: int) -> None:
        """Set the rates for optimizer step ``step`` (counted from 0)."""
        if self.per_step:
            self.apply(step)

    def after_step(self) -> None:
        """Nothing: the rate of the next step is set before it."""

    def after_epoch(self, metrics: dict[str, Any]) -> None:
        """Nothing: a built-in schedule is a function of the step."""

    def apply(self, step: int) -> None:
        if self.epoch_steps:
            step -= step % self.epoch_steps
        scale = self.schedule(step)
        for index, group in enumerate(self.optimizer.param_groups):
            if self.applied is not None and group["lr"] != self.applied[index] and scale > 0:
                logger.debug("The lr of group %d was set to %.3g: the schedule goes on from it.", index, group["lr"])
                self.peak_lrs[index] = group["lr"] / scale
            group["lr"] = self.peak_lrs[index] * scale
        self.applied = [group["lr"] for group in self.optimizer.param_groups]

    def cut(self, factor: float, step: int) -> None:
        """Multiply every peak rate by ``factor`` and set the rates for step ``step`` (a rollback's lr cut)."""
        self.peak_lrs = [lr * factor for lr in self.peak_lrs]
        self.applied = None  # the rollback has just put back the optimizer's rates: they are not anybody's choice
        self.apply(step)

    def state_dict(self) -> dict[str, Any]:
        return {"peak_lrs": list(self.peak_lrs), "applied": self.applied}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "peak_lrs" not in state:
            raise CheckpointMismatchError(
                "the checkpoint's schedule is a scheduler of your own (schedule= a factory), this run's a built-in "
                "one: resume with the schedule the run was started with."
            )
        self.peak_lrs = list(state["peak_lrs"])
        self.applied = state.get("applied")


class SchedulerSteps:
    """A torch LR scheduler of the user's, stepped as torch's own loop steps it.

    ``interval="step"``: ``scheduler.step()`` after every optimizer step; ``"epoch"``: after every
    epoch's validation. ``ReduceLROnPlateau`` steps after every epoch with the monitored metric's
    value. A group rate set by something else since the scheduler last stepped (a callback) is
    kept, and the scheduler's own reference rates (``base_lrs``, ``initial_lr``, ``max_lr`` ...)
    are scaled by the same factor, so that the schedule goes on from it; a rollback's lr cut scales
    them the same way. The scheduler's ``state_dict`` is this part's state in a checkpoint.

    Args:
        optimizer: The optimizer the scheduler sets.
        scheduler: The scheduler (built on ``optimizer``).
        interval: ``"step"`` or ``"epoch"``.
        monitor: The metric ReduceLROnPlateau steps on (a key of the epoch's row).

    Example:
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> steps = SchedulerSteps(optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5), "epoch", "val_loss")
        >>> for epoch in range(3):
        ...     optimizer.step()  # the epoch's training
        ...     steps.after_epoch({"val_loss": 1.0})
        >>> optimizer.param_groups[0]["lr"]
        0.05
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler: Any, interval: str, monitor: str) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        self.optimizer = optimizer
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor
        self.plateau = isinstance(scheduler, ReduceLROnPlateau)
        self.applied = self._rates()

    @property
    def peak_lrs(self) -> list[float]:
        """The scheduler's base rates (the optimizer's current ones for ReduceLROnPlateau)."""
        return list(getattr(self.scheduler, "base_lrs", None) or self._rates())

    def before_step(self, step: int) -> None:
        """Keep a rate set by something else since the scheduler last stepped (scaling the scheduler's references)."""
        for index, group in enumerate(self.optimizer.param_groups):
            if group["lr"] != self.applied[index] and self.applied[index] > 0:
                logger.debug("The lr of group %d was set to %.3g: the scheduler goes on from it.", index, group["lr"])
                _rescale(self.scheduler, group, index, group["lr"] / self.applied[index])
        self.applied = self._rates()

    def after_step(self) -> None:
        if self.interval == "step" and not self.plateau:
            self._step()

    def after_epoch(self, metrics: dict[str, Any]) -> None:
        if self.plateau:
            self.before_step(-1)
            self.scheduler.step(metrics.get(self.monitor, math.nan))
            self.applied = self._rates()
        elif self.interval == "epoch":
            self._step()

    def cut(self, factor: float, step: int) -> None:
        """Multiply the rates and the scheduler's reference rates by ``factor`` (a rollback's lr cut)."""
        for index, group in enumerate(self.optimizer.param_groups):
            group["lr"] *= factor
            _rescale(self.scheduler, group, index, factor)
        self.applied = self._rates()

    def _step(self) -> None:
        self.before_step(-1)
        self.scheduler.step()
        self.applied = self._rates()

    def _rates(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"scheduler": self.scheduler.state_dict(), "applied": list(self.applied)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "scheduler" not in state:
            raise CheckpointMismatchError(
                "the checkpoint's schedule is a built-in one, this run's a scheduler of your own (schedule= a "
                "factory): resume with the schedule the run was started with."
            )
        self.scheduler.load_state_dict(state["scheduler"])
        self.applied = list(state["applied"])


def _scheduler_from(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """Call the schedule factory on ``optimizer`` and check what it built."""
    from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

    from trainwell.config import describe_callable

    name = describe_callable(config.schedule)
    if config.warmup_fraction:
        raise ConfigError(
            f"warmup_fraction={config.warmup_fraction} with schedule={name}: the warm-up of the built-in schedules "
            "does not apply to a scheduler of your own. Build the warm-up into it (torch.optim.lr_scheduler.LinearLR "
            "within a SequentialLR), or drop warmup_fraction."
        )
    scheduler = config.schedule(optimizer)
    if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
        raise ConfigError(
            f"schedule={name} returned {type(scheduler).__name__}: expected a torch LR scheduler built on the "
            "optimizer it receives, e.g. schedule=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 10)."
        )
    if scheduler.optimizer is not optimizer:
        raise ConfigError(
            f"schedule={name} returned a scheduler of another optimizer: build it on the optimizer the factory "
            "receives (schedule=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 10))."
        )
    return scheduler


def _rescale(scheduler: Any, group: dict[str, Any], index: int, factor: float) -> None:
    """Scale a scheduler's reference rates for group ``index`` (and a SequentialLR's parts') by ``factor``."""
    for key in ("initial_lr", "max_lr", "min_lr"):
        if isinstance(group.get(key), float):
            group[key] *= factor
    for owner in [scheduler, *getattr(scheduler, "_schedulers", [])]:
        for name in ("base_lrs", "max_lrs", "_last_lr"):
            rates = getattr(owner, name, None)
            if isinstance(rates, list) and index < len(rates) and isinstance(rates[index], (int, float)):
                rates[index] *= factor


def _check_total(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} is out of range: expected an integer ≥ 1.")
