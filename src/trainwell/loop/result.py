"""What ``fit`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from trainwell.callbacks import EarlyStopping


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        history: One dict per epoch: epoch, train_loss, val_loss, val_accuracy, val_f1,
            val_precision, val_recall (classification) or val_mae, val_rmse, val_r2
            (regression), lr, gpu_memory (CUDA) or memory (CPU), epoch_time_s, samples_per_s,
            nonfinite_steps.
        best: The best epoch's row by the run's monitor (``monitor``/``mode``, or an EarlyStopping
            callback's): the lowest val_loss by default (train_loss without validation),
            improvements smaller than ``early_stopping_min_delta`` not counting.
        stopped_early: Whether early stopping ended training.
        run_dir: Where the run's files are, or None.
        model: The trained model (with the best weights when ``restore_best_weights``).
        best_checkpoint: The committed checkpoint of the best epoch by the same monitor (the
            newest without validation), or None without a run directory.
    """

    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    stopped_early: bool
    run_dir: Path | None
    model: nn.Module | None = field(default=None, repr=False)
    best_checkpoint: Path | None = None

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's row."""
        return self.history[-1] if self.history else {}


def fit_result(trainer: Any) -> FitResult:
    """What ``Trainer.fit`` returns, from the trainer as training left it: the best epoch by its monitor."""
    index = trainer.monitor.best_index([row.get(trainer.monitor.metric) for row in trainer.history])
    best = trainer.history[index] if index is not None else None
    stopped = any(isinstance(c, EarlyStopping) and c.stopped_epoch is not None for c in trainer.callbacks)
    run_dir = Path(trainer.config.run_dir) if trainer.config.run_dir is not None else None
    best_checkpoint = trainer.checkpointing.best_path if trainer.checkpointing is not None else None
    return FitResult(list(trainer.history), best, stopped, run_dir, trainer.module, best_checkpoint)
