"""A progress bar per epoch (running loss and lr), shown only when output is a terminal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.display import REFRESH_SECONDS, is_terminal, number

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView


class ProgressBar(Callback):
    """One tqdm bar per epoch on stderr, redrawn on a timer with the running loss and lr.

    The bar is redrawn after the epoch's first batch and then at most every ``refresh_s``
    seconds, whatever the epoch's length; the running loss is read from the device only at those
    redraws (no per-step host synchronisation). At the epoch's end the bar shows 100%, then
    closes and clears itself, so the terminal keeps one line per epoch: the epoch line, which
    the trainwell console handler writes through tqdm (never glued onto a bar).

    Args:
        enabled: None shows the bar only when stderr is a terminal.
        refresh_s: Least time between two redraws.

    Example:
        >>> bar = ProgressBar(enabled=False)
    """

    def __init__(self, enabled: bool | None = None, refresh_s: float = REFRESH_SECONDS) -> None:
        self.enabled = is_terminal() if enabled is None else enabled
        self.refresh_s = refresh_s
        self._bar: Any = None
        self._shown_steps = 0
        self._last_refresh = 0.0

    def on_epoch_begin(self, trainer: TrainerView, epoch: int, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from trainwell.display import progress

        self._close()
        # The bar redraws only when this callback says so (mininterval 0): the timer lives here,
        # where the running loss is read just before each redraw.
        self._bar = progress(
            total=trainer.steps_per_epoch,
            desc=f"epoch {epoch}/{trainer.config.epochs}",
            unit="batch",
            enabled=True,
            leave=False,
            mininterval=0,
            miniters=1,
        )
        self._shown_steps = trainer.batch_in_epoch or 0
        if self._shown_steps:
            self._bar.update(self._shown_steps)
        self._last_refresh = time.monotonic()

    def on_batch_end(self, trainer: TrainerView, batch_index: int, loss: Any, **kwargs: Any) -> None:
        if self._bar is None:
            return
        steps = batch_index + 1
        now = time.monotonic()
        last = trainer.steps_per_epoch is not None and steps >= trainer.steps_per_epoch
        if self._shown_steps == 0 or last or now - self._last_refresh >= self.refresh_s:
            self._refresh(trainer, steps)
            self._last_refresh = now

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        self._close()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        self._close()

    def _refresh(self, trainer: TrainerView, steps: int) -> None:
        self._bar.set_postfix_str(f"loss {number(trainer.running_loss())}, lr {number(_lr(trainer))}", refresh=False)
        self._bar.update(steps - self._shown_steps)
        self._shown_steps = steps

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _lr(trainer: TrainerView) -> float | None:
    optimizer = getattr(trainer, "optimizer", None)
    return optimizer.param_groups[0]["lr"] if optimizer is not None else None
