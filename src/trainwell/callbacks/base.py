"""The Callback base class: a small fixed set of hooks, each a no-op until overridden.

Every hook takes the trainer plus keyword arguments, so new arguments can be added later without
breaking existing callbacks. A callback stops training by setting ``trainer.should_stop = True``,
never by raising.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer


class Callback:
    """Hooks into the training loop.

    Hooks run in this order::

        on_train_begin
          on_epoch_begin
            on_batch_begin, on_batch_end      (per training batch)
          on_eval_end(metrics)                (after validation)
          on_epoch_end(metrics)               (the epoch's complete metrics)
        on_train_end
        on_exception(error)                   (instead of the remaining hooks, then it propagates)

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, metrics, **kwargs):
        ...         print(metrics["train_loss"])
    """

    def on_train_begin(self, trainer: Trainer, **kwargs: Any) -> None:
        """Training is about to start (after validation of inputs and any resume)."""

    def on_train_end(self, trainer: Trainer, **kwargs: Any) -> None:
        """Training finished, normally or by early stopping."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int, **kwargs: Any) -> None:
        """An epoch (numbered from 1) is about to start."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        """An epoch ended; ``metrics`` is the row appended to ``trainer.history``."""

    def on_batch_begin(self, trainer: Trainer, batch_index: int, **kwargs: Any) -> None:
        """A training batch is about to be processed."""

    def on_batch_end(self, trainer: Trainer, batch_index: int, loss: Any, **kwargs: Any) -> None:
        """A training step ended; ``loss`` is a detached tensor (reading it syncs the device)."""

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, Any], **kwargs: Any) -> None:
        """Validation ended with ``metrics`` (val_loss and the task's metrics)."""

    def on_exception(self, trainer: Trainer, error: BaseException, **kwargs: Any) -> None:
        """Training is failing with ``error``; it propagates after every callback has seen it."""

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints, so that resuming restores the callback exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CallbackList:
    """Calls one hook on every callback, in order."""

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

    def call(self, hook: str, trainer: Trainer, **kwargs: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(trainer, **kwargs)

    def on_batch_begin(self, trainer: Trainer, batch_index: int) -> None:
        for callback in self._batch_begin:
            callback.on_batch_begin(trainer, batch_index=batch_index)

    def on_batch_end(self, trainer: Trainer, batch_index: int, loss: Any) -> None:
        if not self._batch_end:
            return
        loss = loss.detach()
        for callback in self._batch_end:
            callback.on_batch_end(trainer, batch_index=batch_index, loss=loss)


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)
