"""Keeps a run directory's curves.png up to date while training, at a bounded cost."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.files.rundir import RunPaths

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

logger = logging.getLogger("trainwell")


class LearningCurves(Callback):
    """Redraw ``run_dir/curves.png`` from the run's metrics.jsonl as epochs end, and at the end.

    Drawing takes a fraction of a second, which would dominate a run of quick epochs, so an
    epoch's end redraws only when ``min_interval_s`` has passed since the last drawing and at
    least ``cost_ratio`` times as long as that drawing took (plotting stays under about
    1/``cost_ratio`` of the run). The end of training, or a failure, always redraws. Place it
    after the :class:`~trainwell.callbacks.JSONLLogger` that writes the run's metrics.jsonl.

    Args:
        run_dir: The run directory holding metrics.jsonl.
        min_interval_s: Least seconds between two redraws during training.
        cost_ratio: Least ratio of time between redraws to the time one redraw takes.

    Example:
        >>> curves = LearningCurves("runs/demo", min_interval_s=30)
    """

    def __init__(self, run_dir: str | Path, min_interval_s: float = 10.0, cost_ratio: float = 20.0) -> None:
        self.run_dir = Path(run_dir)
        self.min_interval_s = min_interval_s
        self.cost_ratio = cost_ratio
        self.redraws = 0
        self._last_drawn = 0.0
        self._cost = 0.0

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._last_drawn = time.perf_counter()

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        waited = time.perf_counter() - self._last_drawn
        if waited >= max(self.min_interval_s, self.cost_ratio * self._cost):
            self.draw()

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self.draw()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        # The curves of a failed run help most; drawing them must not hide the failure.
        try:
            self.draw()
        except Exception as drawing_error:  # noqa: BLE001 - the training error is the one to raise
            logger.warning("Could not draw the learning curves of the failed run: %s", drawing_error)

    def draw(self) -> None:
        """Redraw curves.png now."""
        from trainwell.observe.curves import plot_runs

        started = time.perf_counter()
        if RunPaths(self.run_dir).metrics.is_file():
            plot_runs([self.run_dir])
            self.redraws += 1
        self._last_drawn = time.perf_counter()
        self._cost = self._last_drawn - started
