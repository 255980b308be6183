"""Preemption: SIGTERM or SIGINT stops training cleanly, after a checkpoint to resume from.

Clusters and cloud schedulers announce preemption with SIGTERM; a person stops a run with Ctrl-C
(SIGINT). On the first of either, training finishes the step in progress, writes a checkpoint
and raises :class:`~trainwell.exceptions.TrainingInterrupted`, whose message says how to resume.
The handlers are then already back to what they were, so a second signal acts at once (SIGINT
raises KeyboardInterrupt, SIGTERM ends the process). Handlers can only be installed from the main
thread; elsewhere signals keep their usual behaviour. A signal the process ignores stays ignored:
whoever started it so (a shell without job control starts background jobs with SIGINT ignored)
meant it not to stop the process.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn

from trainwell.exceptions import TrainingInterrupted

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
                if signal.getsignal(number) is not signal.SIG_IGN:
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


def stop_on_signal(number: int, save: Callable[[], Any], state: Any, run_dir: Any, session: Any = None) -> NoReturn:
    """Commit a checkpoint, record the interruption and raise TrainingInterrupted naming how to resume.

    Args:
        number: The signal received.
        save: Commits a checkpoint of the state after the step (or epoch) that just finished; returns its path.
        state: The loop state (epoch, step; the ``interrupted`` event is recorded in it).
        run_dir: The run directory to resume in.
        session: Under torchrun, the process's session: every process names rank 0's checkpoint.

    Raises:
        TrainingInterrupted: always.
    """
    path = save()
    if session is not None:
        # Several processes stop together: each waits for rank 0's checkpoint and names it.
        path = session.broadcast(path)
    name = signal.Signals(number).name
    state.record_event(
        "interrupted",
        logging.WARNING,
        f"Stopped by {name} at step {state.global_step}; checkpoint {path} is committed.",
        signal=name,
        checkpoint=str(path),
    )
    raise interruption(number, state.epoch, state.global_step, path, run_dir)


def interruption(number: int, epoch: int, step: int, checkpoint: Any, run_dir: Any) -> TrainingInterrupted:
    """The error that ends a run stopped by signal ``number`` after committing ``checkpoint``, saying how to resume.

    Example:
        >>> interruption(15, epoch=2, step=40, checkpoint="runs/a/checkpoints/step-000000040.pt", run_dir="runs/a").signal_number
        15
    """
    name = signal.Signals(number).name
    return TrainingInterrupted(
        f"training stopped by {name} at epoch {epoch}, step {step}; checkpoint '{checkpoint}' is committed. "
        f"Resume with: trainwell train --resume auto --out {run_dir} (command line), or fit(..., run_dir='{run_dir}', resume='auto').",
        signal_number=number,
        checkpoint=checkpoint,
        run_dir=Path(run_dir),
    )
