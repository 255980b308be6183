"""The Callback base class: a small fixed set of hooks, each a no-op until overridden.

Every hook takes the trainer plus keyword arguments, so new arguments can be added later without
breaking existing callbacks. A callback stops training by setting ``trainer.should_stop = True``,
never by raising. What a callback may read from the trainer is :class:`TrainerView`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from trainwell.config import TrainConfig

logger = logging.getLogger("trainwell")


class TrainerView(Protocol):
    """What callbacks read from the :class:`trainwell.Trainer` they are called with.

    Everything here is read-only but ``should_stop``, which a callback sets to stop training
    after the current epoch.
    """

    config: TrainConfig
    model: nn.Module  # the module the loop calls (wrapped for DDP or compilation when in use)
    module: nn.Module  # the plain module being trained
    optimizer: torch.optim.Optimizer
    epoch: int  # the current epoch, from 1
    global_step: int  # optimizer steps so far
    batch_in_epoch: int | None  # batches done in the current epoch; None between epochs
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    should_stop: bool
    steps_per_epoch: int | None
    epoch_samples: int
    run_info: dict[str, Any]
    last_validation: Any  # the last validation pass's ValidationMetrics
    last_grad_norm: torch.Tensor | None  # a device tensor: reading it syncs

    def running_loss(self) -> float:
        """The epoch's mean training loss so far (syncs the device)."""
        ...

    def record_event(self, event: str, level: int = ..., message: str | None = ..., **fields: Any) -> None:
        """Log an event and keep it for metrics.jsonl."""
        ...

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint of the run as it stands: what a checkpoint file holds."""
        ...

    def evaluated_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights validation measures: the moving average's with ``ema_decay``, else the module's."""
        ...

    def is_healthy(self) -> bool:
        """Whether the current state is a good one to return to (no bad step in its epoch)."""
        ...


class Callback:
    """Hooks into the training loop.

    Hooks run in this order::

        on_train_begin
          on_epoch_begin
            on_batch_begin, on_batch_end      (per training batch)
            on_eval_begin, on_eval_end(metrics)   (around validation every val_every_steps, if set)
          on_eval_begin                       (before validation)
          on_eval_end(metrics)                (after validation)
          on_epoch_end(metrics)               (the epoch's complete metrics)
        on_train_end
        on_exception(error)                   (instead of the remaining hooks, then it propagates)

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, metrics, **kwargs):
        ...         print(metrics["train_loss"])
    """

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        """Training is about to start (after validation of inputs and any resume)."""

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        """Training finished, normally or by early stopping."""

    def on_epoch_begin(self, trainer: TrainerView, epoch: int, **kwargs: Any) -> None:
        """An epoch (numbered from 1) is about to start."""

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        """An epoch ended; ``metrics`` is the row appended to ``trainer.history``."""

    def on_batch_begin(self, trainer: TrainerView, batch_index: int, **kwargs: Any) -> None:
        """A training batch is about to be processed."""

    def on_batch_end(self, trainer: TrainerView, batch_index: int, loss: Any, **kwargs: Any) -> None:
        """A training batch ended; ``loss`` is its loss, a detached tensor (reading it syncs the device).

        The keyword ``stepped`` says whether the batch ended with an optimizer step: with
        ``accumulate_grad_batches``, only the last batch of each gradient window does (an epoch
        that ends inside a window steps after its last batch, with no ``on_batch_end``)."""

    def on_eval_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        """Validation is about to start (reset state that training carries, such as a recurrent hidden state)."""

    def on_eval_end(self, trainer: TrainerView, metrics: dict[str, Any], **kwargs: Any) -> None:
        """Validation ended with ``metrics`` (val_loss and the task's metrics); inside an epoch (``val_every_steps``),
        ``trainer.batch_in_epoch`` is not None."""

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        """Training is failing with ``error``; it propagates after every callback has seen it."""

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints, so that resuming restores the callback exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList:
    """Calls one hook on every callback, in order; their states are one part of a checkpoint.

    Each callback's state is kept under its class name (numbered from the second of a class on:
    ``EarlyStopping#2``), so that a resumed run gives every callback back its own.
    """

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"callbacks contains {callback!r} of type {type(callback).__name__}: "
                    "expected trainwell.callbacks.Callback instances."
                )
        # Batch hooks run on every step: keep only the callbacks that override them.
        self._batch_begin = [c for c in self.callbacks if _overrides(c, "on_batch_begin")]
        self._batch_end = [c for c in self.callbacks if _overrides(c, "on_batch_end")]

    def __iter__(self):
        return iter(self.callbacks)

    def call(self, hook: str, trainer: TrainerView, **kwargs: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(trainer, **kwargs)

    def on_batch_begin(self, trainer: TrainerView, batch_index: int) -> None:
        for callback in self._batch_begin:
            callback.on_batch_begin(trainer, batch_index=batch_index)

    def on_batch_end(self, trainer: TrainerView, batch_index: int, loss: Any, stepped: bool) -> None:
        if not self._batch_end:
            return
        loss = loss.detach()
        for callback in self._batch_end:
            callback.on_batch_end(trainer, batch_index=batch_index, loss=loss, stepped=stepped)

    def state_dict(self) -> dict[str, Any]:
        return {key: callback.state_dict() for key, callback in self._keyed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, callback in self._keyed():
            if state.get(key):
                callback.load_state_dict(state[key])
            elif callback.state_dict():
                # Also a callback whose earlier version kept no state.
                logger.warning("Checkpoint has no state for callback %s: it starts afresh.", key)

    def _keyed(self) -> list[tuple[str, Callback]]:
        seen: dict[str, int] = {}
        keyed = []
        for callback in self.callbacks:
            name = type(callback).__name__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", callback))
        return keyed


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)
