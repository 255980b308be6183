"""What the loggers record, and when: the base of the JSONL, CSV and TensorBoard loggers.

Records, in the order they happen:

- ``{"event": "run_start", ...}`` first: ``trainer.run_info`` (trainwell, torch and python
  versions, device, precision, threads, batch_size, steps_per_epoch, peak_lr, parameters, task).
- ``{"event": "step", "epoch", "step", "train_loss", "lr", "grad_norm"}`` every N optimizer
  steps (N defaults to the config's ``log_every_steps``; once per step under
  ``accumulate_grad_batches``). ``train_loss`` is the mean over the
  epoch's steps so far, as a progress bar shows it. Values are read from the device only at
  these steps, so step records add no per-step host synchronisation.
- ``{"event": "epoch", "epoch", "step", ...}`` with the epoch's row of ``trainer.history``
  (train_loss, val_loss, val_accuracy, ..., lr, memory, epoch_time_s, samples_per_s) and the
  ``grad_norm`` of the epoch's last step.
- Events the trainer recorded (``trainer.record_event``: skipped non-finite steps, rollbacks,
  the run's start with its system info, ``validation`` inside an epoch with ``val_every_steps``),
  written before the record that follows them.
- ``{"event": "exception", "type", "message"}`` when training fails, so that the run's record
  says how it ended.

``grad_norm`` is the global gradient norm before clipping; it is absent when clipping is off
(``max_grad_norm=None``), since the trainer then does not compute it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback
from trainwell.exceptions import ConfigError

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

# Exception messages are cut to this length: a record should stay one readable line.
MAX_MESSAGE_CHARS = 1000


class MetricLogger(Callback):
    """Collects step, epoch and event records; subclasses say where they go by overriding :meth:`write`.

    Args:
        every_n_steps: Write a step record every this many optimizer steps; None follows the
            trainer's ``log_every_steps``; 0 writes epoch records and events only.

    Raises:
        ConfigError: ``every_n_steps`` is negative or not an integer.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        if every_n_steps is not None and (
            not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps < 0
        ):
            raise ConfigError(
                f"every_n_steps={every_n_steps!r} is not valid: expected an integer ≥ 0 (0: no step records) "
                "or None (follow the trainer's log_every_steps)."
            )
        self.every_n_steps = every_n_steps
        self._interval = every_n_steps or 0
        self._events_written = 0
        self._resumed = False

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write ``records`` (plain dicts; may be empty) to the logger's destination."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files or writers; called when training ends or fails."""

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        self._interval = self.every_n_steps if self.every_n_steps is not None else trainer.config.log_every_steps
        if not self._resumed:
            # A fresh run: the trainer's event list starts empty. A resumed run keeps the count
            # restored from its checkpoint, so no event is written twice.
            self._events_written = 0
        run_info = getattr(trainer, "run_info", None)
        if run_info:
            self.write([{"event": "run_start", **run_info, **({"resumed": True} if self._resumed else {})}])

    def on_batch_end(
        self, trainer: TrainerView, batch_index: int, loss: Any, stepped: bool = True, **kwargs: Any
    ) -> None:
        if not stepped or not self._interval or trainer.global_step % self._interval:
            return
        record = {
            "event": "step",
            "epoch": trainer.epoch,
            "step": trainer.global_step,
            "train_loss": trainer.running_loss(),
            "lr": trainer.optimizer.param_groups[0]["lr"],
        }
        record.update(_grad_norm(trainer))
        self.write(self._new_events(trainer) + [record])

    def on_epoch_end(self, trainer: TrainerView, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        record: dict[str, Any] = {"event": "epoch", "epoch": epoch}
        if trainer is not None:
            record["step"] = trainer.global_step
        record.update(metrics)
        record.update(_grad_norm(trainer))
        self.write(self._new_events(trainer) + [record])

    def on_train_end(self, trainer: TrainerView, **kwargs: Any) -> None:
        self.write(self._new_events(trainer))
        self.close()

    def on_exception(self, trainer: TrainerView, error: BaseException, **kwargs: Any) -> None:
        failure = {
            "event": "exception",
            "epoch": getattr(trainer, "epoch", None),
            "step": getattr(trainer, "global_step", None),
            "type": type(error).__name__,
            "message": str(error)[:MAX_MESSAGE_CHARS],
        }
        try:
            self.write(self._new_events(trainer) + [failure])
        finally:
            self.close()

    def state_dict(self) -> dict[str, Any]:
        return {"events_written": self._events_written}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._events_written = state["events_written"]
        self._resumed = True

    def _new_events(self, trainer: TrainerView | None) -> list[dict[str, Any]]:
        """Events the trainer recorded that this logger has not written yet."""
        events = list(getattr(trainer, "events", [])[self._events_written :])
        self._events_written += len(events)
        return events


def plain(value: Any) -> Any:
    """``value`` as standard JSON/CSV data: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flat_options(config: dict[str, Any]) -> dict[str, Any]:
    """A config as the flat hyperparameters loggers record: nested keys joined by dots; numbers, text
    and booleans as they are, other values as text.

    Example:
        >>> flat_options({"lr": 0.01, "loggers": ["csv"], "seed": None, "model_args": {"hidden": [8]}})
        {'lr': 0.01, 'loggers': "['csv']", 'seed': 'None', 'model_args.hidden': '[8]'}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            for inner, item in flat_options(value).items():
                flat[f"{key}.{inner}"] = item
        elif isinstance(value, (bool, int, float, str)):
            flat[key] = value
        else:
            flat[key] = str(value)
    return flat


def _grad_norm(trainer: TrainerView | None) -> dict[str, float]:
    norm = getattr(trainer, "last_grad_norm", None)
    return {} if norm is None else {"grad_norm": float(norm)}
