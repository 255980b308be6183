"""Early stopping on a validation metric, restoring the best weights at the end."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from trainwell.callbacks.base import Callback
from trainwell.exceptions import ConfigError
from trainwell.observe.monitor import Monitor

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

logger = logging.getLogger("trainwell")


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` epochs; keep the best weights.

    Passed to ``fit`` (``callbacks=[EarlyStopping(monitor="val_accuracy")]``), it takes the place of
    the built-in early stopping, and its monitor becomes the run's: the same metric, mode and
    ``min_delta`` choose ``FitResult.best`` and the best checkpoint (a ``monitor``/``mode`` set in
    the config must then agree with it).

    Args:
        monitor: The metric to watch: a key of an epoch's row (``"val_loss"``, ``"val_accuracy"``,
            ``"train_loss"`` ...).
        mode: ``"min"``, ``"max"``, or ``"auto"``: ``"max"`` for accuracy-like metrics
            (:func:`~trainwell.observe.monitor.resolve_mode`), ``"min"`` otherwise.
        patience: Epochs without improvement before stopping; None never stops (the best
            weights are still tracked and restored).
        min_delta: The smallest change that counts as an improvement.
        restore_best_weights: At the end of training, load the weights of the best epoch.
        start_epoch: The first epoch whose lack of improvement counts against ``patience``;
            earlier epochs still set the best. The trainer sets it where the lr schedule has
            annealed (:func:`trainwell.loop.schedules.patience_start_epoch`): before that, a
            validation loss that stalls at a high lr says little about what annealing will reach.
        metric: The former name of ``monitor``.

    Raises:
        ConfigError: an invalid mode, a negative ``min_delta`` or ``patience`` < 1.

    Example:
        >>> stopper = EarlyStopping(monitor="val_accuracy", patience=3)
        >>> stopper.monitor.metric, stopper.monitor.mode
        ('val_accuracy', 'max')
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int | None = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        *,
        metric: str | None = None,
        start_epoch: int = 1,
    ) -> None:
        monitor = metric if metric is not None else monitor
        if not isinstance(monitor, str) or not monitor:
            raise ConfigError(f"monitor={monitor!r} is not valid: expected a metric name such as 'val_accuracy'.")
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
            raise ConfigError(f"patience={patience!r} is out of range: expected an integer ≥ 1, or None (no stop).")
        self.monitor = Monitor(monitor, mode=mode, min_delta=min_delta, patience=patience)
        self.restore_best_weights = restore_best_weights
        self.start_epoch = start_epoch
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        value = metrics.get(self.monitor.metric)
        if value is None:
            return
        if self.monitor.update(value, epoch) and self.restore_best_weights:
            # The plain module's names, without a DDP or torch.compile wrapper's prefix: a checkpoint
            # holding them resumes in any setting.
            weights = trainer.evaluated_state_dict()  # the moving average's, when the run keeps one
            self.best_weights = {name: tensor.detach().clone() for name, tensor in weights.items()}
        if epoch < self.start_epoch:
            self.monitor.bad_updates = 0  # patience counts from start_epoch on
        if self.monitor.exhausted and not trainer.should_stop:
            self.stopped_epoch = epoch
            trainer.should_stop = True
            # An event, so that the run's record (and the doctor) know where and at which lr it stopped.
            trainer.record_event(
                "early_stopping",
                logging.INFO,
                f"Early stopping at epoch {epoch}: {self.monitor.metric} has not improved for {self.monitor.patience} "
                f"epochs (best {self.monitor.best:.4g} at epoch {self.monitor.best_epoch}).",
                metric=self.monitor.metric,
                best_epoch=self.monitor.best_epoch,
                lr=metrics.get("lr"),
            )

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        if self.best_weights is None:
            return
        if self.monitor.best_epoch != trainer.epoch:
            logger.info(
                "Restoring the weights of epoch %s, the best by %s (%.4g).",
                self.monitor.best_epoch,
                self.monitor.metric,
                self.monitor.best,
            )
        trainer.module.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        # The best weights travel with the state, so that a resumed run still ends on them.
        return {"monitor": self.monitor.state_dict(), "stopped_epoch": self.stopped_epoch, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state.get("best_weights")
