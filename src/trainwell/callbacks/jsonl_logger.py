"""JSONL logger: one JSON object per epoch appended to a file (a run's ``metrics.jsonl``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback

if TYPE_CHECKING:
    from trainwell.trainer import Trainer


class JSONLLogger(Callback):
    """Append each epoch's metrics to ``path`` as one JSON line, flushed as it is written.

    Each line has an ``event`` key: ``"epoch"`` for the per-epoch metrics, or the name of an event
    the trainer recorded (e.g. ``"nonfinite_skip"``), written before the epoch it happened in.
    Non-finite numbers are written as ``null`` so that every line is standard JSON.

    Example:
        >>> logger = JSONLLogger("runs/demo/metrics.jsonl")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._events_written = 0

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        self._write(self._new_events(trainer) + [{"event": "epoch", **metrics}])

    def on_train_end(self, trainer: Trainer, **kwargs: Any) -> None:
        self._write(self._new_events(trainer))

    def on_exception(self, trainer: Trainer, error: BaseException, **kwargs: Any) -> None:
        self._write(self._new_events(trainer))

    def _new_events(self, trainer: Trainer) -> list[dict[str, Any]]:
        """Events the trainer recorded (skipped steps, ...) that are not in the file yet."""
        events = list(getattr(trainer, "events", [])[self._events_written :])
        self._events_written += len(events)
        return events

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({key: _plain(value) for key, value in record.items()}) + "\n" for record in records)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(lines)


    def state_dict(self) -> dict[str, Any]:
        # The file's length now: a run resumed from this state drops any line written after it
        # (those steps are trained again and their lines written again), so no line appears twice.
        return {"bytes": self.path.stat().st_size if self.path.exists() else 0, "events_written": self._events_written}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._events_written = state["events_written"]
        if self.path.exists() and self.path.stat().st_size > state["bytes"]:
            with self.path.open("r+b") as file:
                file.truncate(state["bytes"])


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
