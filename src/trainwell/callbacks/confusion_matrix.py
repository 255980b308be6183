"""Saves the confusion matrix of the validation pass that describes the trained model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.files.atomic import write_text
from trainwell.observe.monitor import Monitor

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView


class ConfusionMatrixLogger(Callback):
    """Write the validation confusion matrix of the model training ends with to a JSON file.

    With ``restore_best_weights`` (the default) that is the best epoch's by ``monitor``; otherwise
    the last epoch's. Classification only, with at most
    :data:`~trainwell.loop.metrics.CONFUSION_MAX_CLASSES` classes; nothing is written otherwise.

    The file holds ``{"epoch", "val_loss", "labels", "matrix"}`` where ``matrix[true][predicted]``
    counts validation samples.

    Args:
        path: The JSON file to write (atomically) when training ends.
        monitor: Which epoch is best (the run's monitor; by default the lowest val_loss).

    Example:
        >>> saver = ConfusionMatrixLogger("runs/demo/confusion.json")
    """

    def __init__(self, path: str | Path, monitor: Monitor | None = None) -> None:
        self.path = Path(path)
        template = monitor or Monitor("val_loss")
        self.monitor = Monitor(template.metric, template.mode, template.min_delta)
        self.best: dict[str, Any] | None = None
        self.last: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        # The epoch's row: its end-of-epoch validation (not one inside it, with val_every_steps) and every
        # metric the monitor may watch.
        validation = getattr(trainer, "last_validation", None)
        matrix = getattr(validation, "confusion_matrix", None)
        if matrix is None:
            return
        loss = metrics.get("val_loss", math.nan)
        snapshot = {"epoch": trainer.epoch, "val_loss": loss, "labels": list(range(len(matrix))), "matrix": matrix}
        self.last = snapshot
        if self.monitor.update(metrics.get(self.monitor.metric, math.nan), trainer.epoch):
            self.best = snapshot

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        restored = trainer.config.restore_best_weights and self.best is not None
        chosen = self.best if restored else self.last
        if chosen is not None:
            write_text(self.path, json.dumps({**chosen, "weights": "best" if restored else "last"}) + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"monitor": self.monitor.state_dict(), "best": self.best, "last": self.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.best, self.last = state["best"], state["last"]
