"""Self-healing training: roll back to the last good state and lower the learning rate when steps keep going bad.

The policy, one escalation per level:

1. a step whose loss or gradient norm is non-finite (or whose loss spikes above
   ``loss_spike_factor`` times its running mean, when that is set) is skipped
   (:class:`~trainwell.reliability.divergence.NonFiniteGuard`);
2. after ``max_nonfinite_steps`` bad steps in a row the model, optimizer and GradScaler go back
   to the last good state, the learning rate is multiplied by ``rollback_lr_factor`` (0.5) and
   training continues with the next batch;
3. after ``max_rollbacks`` rollbacks, :class:`DivergenceError` says what was tried.

Each action is logged and recorded as an event (``nonfinite_skip``, ``rollback``) in metrics.jsonl.

Which state to go back to. A state is *good* when no step of its epoch had gone bad when it was
taken. Among good states the rollback picks the one of the best epoch by the run's monitor (val_loss
unless ``monitor`` says otherwise: the one early stopping would keep), else the newest: a run that was
improving goes back to its last epoch, a run whose validation had been getting worse as it blew up
goes back further, to before the damage.
These states cost nothing per step: with a run directory they are its committed checkpoints (on
disk anyway; a host copy of the starting state serves until the first one is committed, and is
then freed); without one, a copy on the host taken when training starts and at the end of each
good epoch that is the best so far. Copying the state more often would mean per-step copies of the
whole model and optimizer (and, on an accelerator, a host synchronisation each time), which the
hot loop does not pay for; the price is that a rollback goes back at least to an epoch's end (or to
the last ``checkpoint_every_steps`` checkpoint).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from trainwell.exceptions import CheckpointError, DivergenceError
from trainwell.files.checkpoint import read_checkpoint
from trainwell.files.manifest import Manifest, committed_checkpoints, epoch_checkpoints
from trainwell.observe.monitor import Monitor
from trainwell.reliability.divergence import NonFiniteGuard
from trainwell.reliability.resume import trainer_state_of

logger = logging.getLogger("trainwell")


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class LearningRates(Protocol):
    """The schedule part a rollback cuts (:class:`trainwell.loop.schedules.LearningRate`)."""

    peak_lrs: list[float]

    def cut(self, factor: float, step: int) -> None: ...


class LoopState(Protocol):
    """What the healer reads of the loop's state (:class:`trainwell.loop.state.TrainState`)."""

    epoch: int
    global_step: int
    history: list[dict[str, Any]]
    skipped_at_epoch_start: int

    def record_event(self, event: str, level: int = ..., message: str | None = ..., **fields: Any) -> None: ...


class Healer:
    """Rolls a run back to its last good state and cuts the learning rate, a limited number of times.

    Built with the parts it repairs: the model, optimizer and precision whose states it puts back,
    the learning rates it cuts, and the loop state it reads (step, history) and records events in.

    Args:
        max_rollbacks: Rollbacks allowed in a run; the next divergence raises DivergenceError. 0
            never rolls back.
        lr_factor: Each rollback multiplies the learning rate by this.
        checkpoints: The directory of the run's committed checkpoints, or None without one.
        module, optimizer, precision: The parts whose states a rollback restores.
        learning_rates: The schedule part whose peak rates a rollback cuts.
        state: The loop's state.
        guard: The guard whose runs of bad steps call :meth:`on_diverged`.
        monitor: Which epoch is best (the one a rollback prefers to return to).
        peak_lr: The peak lr training started with (for the DivergenceError message).
        read: Reads a checkpoint to roll back to (every process of a sharded run reads its pieces together).

    Example:
        >>> from trainwell.loop.state import TrainState
        >>> healer = Healer(3, 0.5, None, module=torch.nn.Linear(1, 1), optimizer=None, precision=None,
        ...                 learning_rates=None, state=TrainState(), guard=NonFiniteGuard(5), monitor=Monitor("val_loss"))
        >>> healer.rollbacks
        0
    """

    def __init__(
        self,
        max_rollbacks: int,
        lr_factor: float,
        checkpoints: Path | None,
        *,
        module: torch.nn.Module,
        optimizer: Stateful | None,
        precision: Stateful | None,
        learning_rates: LearningRates | None,
        state: LoopState,
        guard: NonFiniteGuard,
        monitor: Monitor,
        peak_lr: float | None = None,
        read: Callable[[Path], dict[str, Any]] = read_checkpoint,
    ) -> None:
        self.max_rollbacks = max_rollbacks
        self.lr_factor = lr_factor
        self.checkpoints = checkpoints
        self.module = module
        self.optimizer = optimizer
        self.precision = precision
        self.learning_rates = learning_rates
        self.state = state
        self.guard = guard
        self.monitor = monitor
        self.peak_lr = peak_lr
        self.read = read
        self.rollbacks = 0
        self.good_step: int | None = None
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_history: list[float | None] = []

    def is_good(self) -> bool:
        """Whether the current state is worth rolling back to: no bad step in its epoch so far."""
        return self.guard.consecutive == 0 and self.guard.skipped == self.state.skipped_at_epoch_start

    def remember(self) -> None:
        """Keep a host copy of the current state as the good state to roll back to (only without checkpoints)."""
        if self.max_rollbacks == 0:
            return
        self._snapshot = {
            "model": _to_host(self.module.state_dict()),
            "optimizer": _to_host(self.optimizer.state_dict()),
            "precision": _to_host(self.precision.state_dict()),
            "step": self.state.global_step,
        }

    def on_good_checkpoint(self) -> None:
        """A good checkpoint is committed: roll back to checkpoints from now on and free the host copy."""
        self._snapshot = None

    def on_epoch_end(self) -> None:
        """Without checkpoints, copy a good epoch's state if it is the best so far (or there is no validation)."""
        if self.checkpoints is not None or not self.is_good():
            return
        value = self.state.history[-1].get(self.monitor.metric) if self.state.history else None
        if value is not None and not math.isfinite(value):
            return
        self._snapshot_history.append(value)
        if value is None or self.monitor.best_index(self._snapshot_history) == len(self._snapshot_history) - 1:
            self.remember()

    def on_diverged(self, run: int, step: int) -> None:
        """Roll back and cut the learning rate, or raise DivergenceError when the rollbacks are used up."""
        if self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(f"{self.guard.describe(run, step)} {self._what_was_tried()}{self.guard.advice}")
        before = self.optimizer.param_groups[0]["lr"]
        state = self._good_state(run, step)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.precision.load_state_dict(state["precision"])
        self.learning_rates.cut(self.lr_factor, self.state.global_step)
        self.rollbacks += 1
        self.good_step = state["step"]
        after = self.optimizer.param_groups[0]["lr"]
        self.state.record_event(
            "rollback",
            logging.WARNING,
            f"{run} bad steps in a row up to step {step}: rolled back to the state of step {self.good_step} and cut "
            f"the learning rate by {self.lr_factor:g} (now {after:.3g}); rollback {self.rollbacks} of {self.max_rollbacks}.",
            to_step=self.good_step,
            lr=after,
            lr_before=before,
            rollbacks=self.rollbacks,
        )

    def _good_state(self, run: int, step: int) -> dict[str, Any]:
        """The best good state: a good checkpoint (the best epoch, else the newest), else the host copy."""
        for manifest in self._good_checkpoints():
            try:
                checkpoint = self.read(manifest.path)
                parts = trainer_state_of(checkpoint, f"checkpoint '{manifest.path}'")
            except CheckpointError as error:
                logger.warning("Cannot roll back to %s: %s", manifest.path.name, error)
                continue
            return {
                "model": parts["model"],
                "optimizer": parts["optimizer"],
                "precision": parts["precision"],
                "step": checkpoint["step"],
            }
        if self._snapshot is None:
            raise DivergenceError(
                f"{self.guard.describe(run, step)} There is no good state to roll back to. {self.guard.advice}"
            )
        return self._snapshot

    def _good_checkpoints(self) -> list[Manifest]:
        """Healthy committed checkpoints up to now: the end-of-epoch ones best first, then the others newest first."""
        if self.checkpoints is None:
            return []
        now = (self.state.global_step, self.state.epoch)
        good = [m for m in committed_checkpoints(self.checkpoints) if m.healthy and m.order <= now]
        scored = self.monitor.ranked(epoch_checkpoints(good), value=lambda m: m.value(self.monitor.metric))
        return scored + [m for m in good if m not in scored]

    def _what_was_tried(self) -> str:
        if self.max_rollbacks == 0:
            return "Rollbacks are off (max_rollbacks=0). "
        now = self.learning_rates.peak_lrs[0] if self.learning_rates is not None else math.nan
        started = self.peak_lr if self.peak_lr is not None else math.nan
        return (
            f"Tried: skipping each bad step, then {self.rollbacks} rollbacks to the last good state (step {self.good_step}), "
            f"cutting the learning rate by {self.lr_factor:g} each time (peak lr {started:.3g} -> {now:.3g}); "
            "the steps still went bad. "
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = state["rollbacks"]


def divergence_advice(max_grad_norm: float | None, peak_lr: float, precision: str) -> str:
    """What to change when training diverges, for the DivergenceError message."""
    advice = [f"Lower lr (now {peak_lr:.3g}; try {peak_lr / 10:.3g})"]
    advice.append(
        "enable gradient clipping (max_grad_norm=1.0)"
        if max_grad_norm is None
        else f"clip harder (max_grad_norm={max_grad_norm / 10:g})"
    )
    if precision != "fp32":
        advice.append("try precision='fp32'")
    return "; ".join(advice) + ", and check the data for NaN or inf values."


def _to_host(value: Any) -> Any:
    """A deep copy of a state dict with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((key, _to_host(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(item) for item in value)
    return value
