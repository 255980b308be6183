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
taken. Among good states the rollback picks the one of the best epoch by val_loss (the one early
stopping would keep), else the newest: a run that was improving goes back to its last epoch, a run
whose validation had been getting worse as it blew up goes back further, to before the damage.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainwell.files.checkpoint import Manifest, committed_checkpoints, read_checkpoint
from trainwell.reliability.divergence import NonFiniteGuard
from trainwell.exceptions import CheckpointError, DivergenceError

if TYPE_CHECKING:
    from trainwell.config import TrainConfig
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")


class Healer:
    """Rolls a trainer back to its last good state and cuts the learning rate, a limited number of times.

    Args:
        max_rollbacks: Rollbacks allowed in a run; the next divergence raises DivergenceError. 0
            never rolls back.
        lr_factor: Each rollback multiplies the learning rate by this.
        checkpoints: The directory of the run's committed checkpoints, or None without one.

    Example:
        >>> healer = Healer(max_rollbacks=3, lr_factor=0.5)
        >>> healer.rollbacks
        0
    """

    def __init__(self, max_rollbacks: int, lr_factor: float, checkpoints: Path | None = None) -> None:
        self.max_rollbacks = max_rollbacks
        self.lr_factor = lr_factor
        self.checkpoints = checkpoints
        self.rollbacks = 0
        self.good_step: int | None = None
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_val_loss: float | None = None

    def remember(self, trainer: Trainer, val_loss: float | None = None) -> None:
        """Keep a host copy of the trainer's state as the good state to roll back to (only without checkpoints)."""
        if self.max_rollbacks == 0:
            return
        self._snapshot = {
            "model": _to_host(trainer.module.state_dict()),
            "optimizer": _to_host(trainer.optimizer.state_dict()),
            "precision": _to_host(trainer.precision.state_dict()),
            "step": trainer.global_step,
        }
        self._snapshot_val_loss = val_loss

    def on_good_checkpoint(self) -> None:
        """A good checkpoint is committed: roll back to checkpoints from now on and free the host copy."""
        self._snapshot = None

    def on_epoch_end(self, trainer: Trainer) -> None:
        """Without checkpoints, copy a good epoch's state if it is the best so far by val_loss (or there is no validation)."""
        if self.checkpoints is not None or not is_good(trainer):
            return
        val_loss = trainer.history[-1].get("val_loss") if trainer.history else None
        if val_loss is not None and not math.isfinite(val_loss):
            return
        if val_loss is None or self._snapshot_val_loss is None or val_loss <= self._snapshot_val_loss:
            self.remember(trainer, val_loss)

    def on_diverged(self, trainer: Trainer, run: int, step: int) -> None:
        """Roll back and cut the learning rate, or raise DivergenceError when the rollbacks are used up."""
        guard = trainer.guard
        if self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(f"{guard.describe(run, step)} {self._what_was_tried(trainer)}{guard.advice}")
        before = trainer.optimizer.param_groups[0]["lr"]
        state = self._good_state(trainer, run, step)
        trainer.module.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.precision.load_state_dict(state["precision"])
        trainer._peak_lrs = [lr * self.lr_factor for lr in trainer._peak_lrs]
        trainer._set_lr(trainer.global_step)
        self.rollbacks += 1
        self.good_step = state["step"]
        after = trainer.optimizer.param_groups[0]["lr"]
        trainer.record_event(
            "rollback",
            logging.WARNING,
            f"{run} bad steps in a row up to step {step}: rolled back to the state of step {self.good_step} and cut "
            f"the learning rate by {self.lr_factor:g} (now {after:.3g}); rollback {self.rollbacks} of {self.max_rollbacks}.",
            to_step=self.good_step,
            lr=after,
            lr_before=before,
            rollbacks=self.rollbacks,
        )

    def _good_state(self, trainer: Trainer, run: int, step: int) -> dict[str, Any]:
        """The best good state by val_loss: a good checkpoint (the best epoch, else the newest), else the host copy."""
        for manifest in self._good_checkpoints(trainer):
            try:
                checkpoint = read_checkpoint(manifest.path)
            except CheckpointError as error:
                logger.warning("Cannot roll back to %s: %s", manifest.path.name, error)
                continue
            return {
                "model": checkpoint["model_state_dict"],
                "optimizer": checkpoint["optimizer_state_dict"],
                "precision": checkpoint["precision"],
                "step": checkpoint["step"],
            }
        if self._snapshot is None:
            raise DivergenceError(
                f"{trainer.guard.describe(run, step)} There is no good state to roll back to. {trainer.guard.advice}"
            )
        return self._snapshot

    def _good_checkpoints(self, trainer: Trainer) -> list[Manifest]:
        if self.checkpoints is None:
            return []
        now = (trainer.global_step, trainer.epoch)
        good = [m for m in committed_checkpoints(self.checkpoints) if m.healthy and m.order <= now]
        scored = sorted((m for m in good if m.kind == "epoch" and m.val_loss is not None), key=lambda m: m.val_loss)
        return scored + [m for m in good if m not in scored]

    def _what_was_tried(self, trainer: Trainer) -> str:
        if self.max_rollbacks == 0:
            return "Rollbacks are off (max_rollbacks=0). "
        return (
            f"Tried: skipping each bad step, then {self.rollbacks} rollbacks to the last good state (step {self.good_step}), "
            f"cutting the learning rate by {self.lr_factor:g} each time (peak lr {trainer.peak_lr:.3g} -> {trainer._peak_lrs[0]:.3g}); "
            "the steps still went bad. "
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rollbacks = state["rollbacks"]


def build_guard(trainer: Trainer, advice: str) -> tuple[Healer, LossSpikeDetector | None, NonFiniteGuard]:
    """The trainer's divergence machinery from its config: the healer, the spike detector (or None) and the guard."""
    config = trainer.config
    checkpoints = (
        Path(config.run_dir) / "checkpoints" if config.run_dir is not None and config.save_checkpoints else None
    )
    healer = Healer(config.max_rollbacks, config.rollback_lr_factor, checkpoints)
    spikes = LossSpikeDetector(config.loss_spike_factor) if config.loss_spike_factor is not None else None
    guard = NonFiniteGuard(
        config.max_nonfinite_steps,
        advice=advice,
        on_skip=trainer._record_skip,
        on_diverged=lambda run, step: healer.on_diverged(trainer, run, step),
        bad="non-finite or spiking" if spikes is not None else "non-finite",
    )
    return healer, spikes, guard


def divergence_advice(config: TrainConfig, peak_lr: float, precision: str) -> str:
    """What to change when training diverges, for the DivergenceError message."""
    clip = config.max_grad_norm
    advice = [f"Lower lr (now {peak_lr:.3g}; try {peak_lr / 10:.3g})"]
    advice.append("enable gradient clipping (max_grad_norm=1.0)" if clip is None else f"clip harder (max_grad_norm={clip / 10:g})")
    if precision != "fp32":
        advice.append("try precision='fp32'")
    return "; ".join(advice) + ", and check the data for NaN or inf values."


def is_good(trainer: Trainer) -> bool:
    """Whether the trainer's current state is worth rolling back to: no bad step in its epoch so far."""
    return trainer.guard.consecutive == 0 and trainer.guard.skipped == trainer._nonfinite_at_epoch_start


class LossSpikeDetector:
    """Flags a loss above ``factor`` times the running mean of the good losses before it.

    The running mean is an exponential moving average over roughly the last 50 good steps; the
    first ``warmup_steps`` good steps are never flagged, while the mean settles. Both a host
    version (CPU, where reading the loss is free) and a device version (no synchronisation) exist.

    Args:
        factor: How many times the running mean counts as a spike (> 1).
        warmup_steps: Good steps observed before any is flagged.

    Example:
        >>> detector = LossSpikeDetector(factor=3.0, warmup_steps=2)
        >>> [detector.check(v) for v in (1.0, 1.0, 1.1)]
        [None, None, None]
        >>> detector.check(9.0)
        'Loss spike (9, over 3x its running mean)'
    """

    DECAY = 0.98

    def __init__(self, factor: float, warmup_steps: int = 20) -> None:
        self.factor = factor
        self.warmup_steps = warmup_steps
        self.mean: float | None = None
        self.seen = 0
        self._device_mean: torch.Tensor | None = None
        self._device_seen: torch.Tensor | None = None

    def check(self, loss: float) -> str | None:
        """Host mode: why ``loss`` counts as a spike, or None; a loss that does not spike updates the running mean."""
        if self.mean is not None and self.seen >= self.warmup_steps and loss > self.factor * self.mean:
            return f"Loss spike ({loss:.4g}, over {self.factor:g}x its running mean)"
        self.mean = loss if self.mean is None else self.DECAY * self.mean + (1 - self.DECAY) * loss
        self.seen += 1
        return None

    def spikes_on_device(self, loss: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """Device mode: ``bad`` or'ed with whether ``loss`` spikes, without a host synchronisation."""
        loss = loss.detach().float()
        if self._device_mean is None:
            self._device_mean = torch.zeros((), device=loss.device)
            self._device_seen = torch.zeros((), dtype=torch.int64, device=loss.device)
        settled = self._device_seen >= self.warmup_steps
        spike = settled & (loss > self.factor * self._device_mean)
        bad = bad | spike
        good = ~bad
        first = self._device_seen == 0
        updated = torch.where(first, loss, self.DECAY * self._device_mean + (1 - self.DECAY) * loss)
        self._device_mean = torch.where(good, updated, self._device_mean)
        self._device_seen = self._device_seen + good.to(torch.int64)
        return bad


def _to_host(value: Any) -> Any:
    """A deep copy of a state dict with every tensor on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((key, _to_host(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(item) for item in value)
    return value
