"""A progress bar per epoch (loss and throughput), shown only when output is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView


class ProgressBar(Callback):
    """tqdm bar per epoch, refreshed every ``trainer.config.log_every_steps`` steps.

    The running loss is read from the device only at those refreshes, so the bar adds no
    per-step host synchronisation.

    Args:
        enabled: None shows the bar only when stderr is a terminal.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._shown_steps = 0
        self._started = 0.0

    def on_epoch_begin(self, trainer: TrainerView, epoch: int, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=trainer.steps_per_epoch,
            desc=f"epoch {epoch}/{trainer.config.epochs}",
            unit="batch",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self._shown_steps = 0
        self._started = time.perf_counter()

    def on_batch_end(self, trainer: TrainerView, batch_index: int, loss: Any, **kwargs: Any) -> None:
        if self._bar is None or (batch_index + 1) % trainer.config.log_every_steps:
            return
        self._refresh(trainer, batch_index + 1)

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        self._close()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        self._close()

    def _refresh(self, trainer: TrainerView, steps: int) -> None:
        self._bar.update(steps - self._shown_steps)
        self._shown_steps = steps
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._bar.set_postfix(
            loss=f"{trainer.running_loss():.4f}",
            samples_per_s=f"{trainer.epoch_samples / elapsed:.0f}",
            refresh=False,
        )

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
