"""Preemption: SIGTERM or SIGINT stops training cleanly, after a checkpoint to resume from.

Clusters and cloud schedulers announce preemption with SIGTERM; a person stops a run with Ctrl-C
(SIGINT). On the first of either, training finishes the step in progress, writes a checkpoint
and raises :class:`~trainwell.exceptions.TrainingInterrupted`, whose message says how to resume.
The handlers are then already back to what they were, so a second signal acts at once (SIGINT
raises KeyboardInterrupt, SIGTERM ends the process). Handlers can only be installed from the main
thread; elsewhere signals keep their usual behaviour.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import TrainingInterrupted

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalCatcher:
    """A context manager that records the first SIGTERM/SIGINT instead of dying on it.

    Attributes:
        received: The signal number received, or None.

    Example:
        >>> with SignalCatcher() as catcher:
        ...     pass  # the training loop checks catcher.received after each step
        >>> catcher.received is None
        True
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalCatcher:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._restore()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received = number
        self._restore()
        logger.warning(
            "Received %s: finishing the current step, then writing a checkpoint and stopping. Send it again to stop at once.",
            signal.Signals(number).name,
        )

    def _restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


class SharedSignalCatcher(SignalCatcher):
    """A SignalCatcher for one of several processes: a signal counts once the processes share it.

    The handler only keeps the signal as ``pending``; ``received``, which the training loop acts
    on, is set by :class:`~trainwell.callbacks.process_sync.ProcessSync` in every process at the
    same step, when any of them has a signal pending.

    Example:
        >>> with SharedSignalCatcher() as catcher:
        ...     pass
        >>> catcher.pending, catcher.received
        (None, None)
    """

    def __enter__(self) -> SharedSignalCatcher:
        self.pending: int | None = None
        return super().__enter__()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.pending = number
        self._restore()
        logger.warning(
            "Received %s: every process stops at the next shared check (within log_every_steps steps, or at the end of "
            "the epoch), after a checkpoint. Send it again to stop at once.",
            signal.Signals(number).name,
        )


def stop_on_signal(trainer: Trainer, batch_in_epoch: int | None) -> None:
    """Commit a checkpoint of the state after the step that just finished, then raise TrainingInterrupted.

    Args:
        trainer: The trainer, between two steps (or at the end of an epoch).
        batch_in_epoch: Batches done in the current epoch; None at the end of an epoch.

    Raises:
        TrainingInterrupted: always, naming the checkpoint and how to resume.
    """
    number = trainer._signals.received
    name = signal.Signals(number).name
    path = trainer.checkpointing.save(trainer, batch_in_epoch=batch_in_epoch, kind="interrupt")
    if getattr(trainer, "distributed", None) is not None:
        # Several processes stop together: each waits for rank 0's checkpoint and names it.
        path = trainer.distributed.broadcast(path)
    run_dir = trainer.config.run_dir
    trainer.record_event(
        "interrupted",
        logging.WARNING,
        f"Stopped by {name} at step {trainer.global_step}; checkpoint {path} is committed.",
        signal=name,
        checkpoint=str(path),
    )
    raise TrainingInterrupted(
        f"training stopped by {name} at epoch {trainer.epoch}, step {trainer.global_step}; checkpoint '{path}' is committed. "
        f"Resume with: trainwell train --resume auto --out {run_dir} (command line), or fit(..., run_dir='{run_dir}', resume='auto').",
        signal_number=number,
        checkpoint=path,
        run_dir=Path(run_dir),
    )
