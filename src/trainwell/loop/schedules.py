"""Learning-rate schedules as pure functions of the step count.

The Trainer asks ``schedule(step)`` for a multiplier of the peak learning rate before every
optimizer step. A schedule holds no state that changes during training, so resuming at step
``k`` needs nothing but ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import DataError

if TYPE_CHECKING:
    import torch

    from trainwell.config import TrainConfig

# The one-cycle policy starts at peak/25 and ends at peak/(25 * 1e4), as in Smith & Topin (2019)
# and torch.optim.lr_scheduler.OneCycleLR's defaults, so results carry over from either.
ONECYCLE_INITIAL_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4

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


def schedule_for(config: TrainConfig, steps_per_epoch: int | None) -> LRSchedule:
    """The config's schedule over the whole run (``epochs`` x ``steps_per_epoch`` steps).

    Args:
        config: The training config (``schedule``, ``warmup_fraction``, ``epochs``).
        steps_per_epoch: ``len(train_loader)``, or None for a loader without a length.

    Raises:
        DataError: a schedule that needs the run's length, for a loader without one.
    """
    if steps_per_epoch is None:
        if config.schedule != "constant" or config.warmup_fraction:
            raise DataError(
                f"train_loader has no len(), which schedule={config.schedule!r} needs to plan the run. "
                "Give the loader a __len__ (a DataLoader over a map-style dataset, a list) or use "
                "schedule='constant' with warmup_fraction=0."
            )
        return lambda step: 1.0
    return build_schedule(config.schedule, steps_per_epoch * config.epochs, config.warmup_fraction)


# Early stopping's patience counts from the first epoch that ends, after the warm-up, with the lr
# at most this share of its peak (README, "What is measured": with it, --epochs 40 never ended
# worse than --epochs 10 on digits).
ANNEALED_SHARE = 0.5


def patience_start_epoch(config: TrainConfig, steps_per_epoch: int | None, share: float | None = None) -> int:
    """The first epoch whose lack of improvement counts against early stopping's patience.

    Under a schedule that anneals (one-cycle, cosine), a validation loss that stalls while the lr
    is still high says little about where annealing will take it: stopping then ends the run with
    a model that never trained at a low lr, worse than a shorter run of the same schedule. So
    patience counts from the first epoch that ends after the warm-up with the lr at most ``share``
    of its peak; earlier epochs still set the best weights. A constant rate (or a loader without
    a length) counts from epoch 1.

    Example:
        >>> from trainwell.config import TrainConfig
        >>> patience_start_epoch(TrainConfig(schedule="onecycle", epochs=40), steps_per_epoch=23)
        27
        >>> patience_start_epoch(TrainConfig(schedule="constant", epochs=40), steps_per_epoch=23)
        1
    """
    share = ANNEALED_SHARE if share is None else share
    if config.schedule == "constant" or steps_per_epoch is None:
        return 1
    schedule = schedule_for(config, steps_per_epoch)
    warmup_steps = config.warmup_fraction * steps_per_epoch * config.epochs
    for epoch in range(1, config.epochs + 1):
        last_step = epoch * steps_per_epoch - 1
        if last_step >= warmup_steps and schedule(last_step) <= share:
            return epoch
    return config.epochs


class LearningRate:
    """The optimizer's learning rates over the run: each group's peak rate times the schedule at the step.

    The peak rates start as the optimizer's (one per parameter group) and change only when a
    rollback cuts them; they are this part's state in a checkpoint. The schedule is a pure function
    of the step, so nothing else needs saving.

    Args:
        optimizer: The optimizer whose groups' ``lr`` is set.
        schedule: The multiplier of the peak rate at each step.
        per_step: Whether the rate changes from step to step (False for a constant rate without
            warm-up, which then costs nothing per step).

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

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, per_step: bool) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.per_step = per_step
        self.peak_lrs = [group["lr"] for group in optimizer.param_groups]

    def before_step(self, step: int) -> None:
        """Set the rates for optimizer step ``step`` (counted from 0)."""
        if self.per_step:
            self.apply(step)

    def apply(self, step: int) -> None:
        scale = self.schedule(step)
        for group, peak in zip(self.optimizer.param_groups, self.peak_lrs):
            group["lr"] = peak * scale

    def cut(self, factor: float, step: int) -> None:
        """Multiply every peak rate by ``factor`` and set the rates for step ``step`` (a rollback's lr cut)."""
        self.peak_lrs = [lr * factor for lr in self.peak_lrs]
        self.apply(step)

    def state_dict(self) -> dict[str, Any]:
        return {"peak_lrs": list(self.peak_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.peak_lrs = list(state["peak_lrs"])


def _check_total(total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps} is out of range: expected an integer ≥ 1.")
