"""SaveLRFinderPlot: the LR finder's curve, saved into the run directory once it exists (``--lr auto``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.files.rundir import RunPaths

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView


class SaveLRFinderPlot(Callback):
    """Write an :class:`~trainwell.loop.lr_finder.LRFinderResult`'s plot as ``<run_dir>/lr_find.png``.

    The finder runs before the run directory is created (which happens only once every check
    has passed), so its plot is written when training begins.

    Args:
        result: What :func:`trainwell.find_lr` returned (anything with ``plot(path)``).

    Example:
        >>> # trainwell.fit(..., run_dir="runs/x", callbacks=[SaveLRFinderPlot(trainwell.find_lr(model, loader))])
    """

    def __init__(self, result: Any) -> None:
        self.result = result
        self.path: Path | None = None

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        from trainwell.system import is_primary_process

        if trainer.config.run_dir is not None and is_primary_process():
            self.path = self.result.plot(RunPaths(Path(trainer.config.run_dir)).lr_find)
            logging.getLogger("trainwell").info("LR finder plot: %s", self.path)
