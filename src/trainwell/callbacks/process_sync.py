"""Keeps the processes of a data-parallel run in step: one stop decision, shared signals, no early leaving."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.exceptions import TrainingInterrupted

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView
    from trainwell.distributed.session import Session

logger = logging.getLogger("trainwell")


class ProcessSync(Callback):
    """What every process of a torchrun job does at the same point, so that none waits for the others forever.

    The Trainer adds it under torchrun (see :mod:`trainwell.distributed.session`), after every other
    callback but checkpointing:

    - ``on_epoch_begin``: ``set_epoch`` of the training DataLoader's DistributedSampler;
    - every ``log_every_steps`` steps: whether any process received SIGTERM/SIGINT (one small
      all-reduce), so that every process checkpoints and stops after the same step;
    - ``on_epoch_end``: the same, and whether any process wants to stop (early stopping, a
      callback): decided once for all, before the checkpoint records it;
    - ``on_train_end``, and after a shared interruption: a barrier, so that no process leaves
      while rank 0 still writes the run's files.

    Args:
        session: The process's :class:`~trainwell.distributed.session.Session`.
        signals: The run's :class:`~trainwell.reliability.preemption.SharedSignalCatcher`.
        train_loader: The training loader, whose sampler learns each epoch's number.
    """

    def __init__(self, session: Session, signals: Any, train_loader: Any) -> None:
        self.session = session
        self.signals = signals
        self.train_loader = train_loader

    def on_epoch_begin(self, trainer: TrainerView, epoch: int, **kwargs: Any) -> None:
        loader = self.train_loader
        batch_sampler = getattr(loader, "batch_sampler", None)
        for owner in (getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
            if callable(getattr(owner, "set_epoch", None)):
                owner.set_epoch(epoch - 1)
                return

    def on_batch_end(
        self, trainer: TrainerView, batch_index: int, loss: Any, stepped: bool = True, **kwargs: Any
    ) -> None:
        # Once per optimizer step, so that a shared stop falls between steps (never inside a gradient window).
        if stepped and trainer.global_step % trainer.config.log_every_steps == 0:
            self._share(trainer, stop=False)

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        stop = self._share(trainer, stop=trainer.should_stop)
        if stop and not trainer.should_stop:
            logger.info("Stopping after epoch %d: another process decided to stop.", epoch)
        trainer.should_stop = stop

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self.session.barrier()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        # Every process stops together on a shared signal: wait for rank 0's metrics and report.
        if isinstance(error, TrainingInterrupted):
            self.session.barrier()

    def _share(self, trainer: TrainerView, stop: bool) -> bool:
        """Whether any process wants to stop; a signal pending in any process becomes every process's."""
        signals = self.signals
        stop_anywhere, signal_number = self.session.any(int(stop), getattr(signals, "pending", None) or 0)
        if signal_number and signals.received is None:
            signals.received = signal_number
        return bool(stop_anywhere)
