"""JSONL logger: the run's record, one JSON object per line (a run directory's ``metrics.jsonl``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainwell.callbacks.metric_logger import MetricLogger, plain
from trainwell.files.storage import writing


class JSONLLogger(MetricLogger):
    """Append step, epoch and event records to ``path`` as JSON lines, flushed as they are written.

    Each line has an ``event`` key: ``"step"`` every ``every_n_steps`` optimizer steps,
    ``"epoch"`` for each epoch's metrics, ``"exception"`` when training fails, or the name of an
    event the trainer recorded (e.g. ``"nonfinite_skip"``), written before the record that
    follows it. Non-finite numbers are written as ``null`` so that every line is standard JSON.
    See :mod:`trainwell.callbacks.metric_logger` for the keys of each record.

    Args:
        path: The file to append to (its directory is created).
        every_n_steps: Step record interval; None follows the trainer's ``log_every_steps``,
            0 writes no step records.

    Example:
        >>> logger = JSONLLogger("runs/demo/metrics.jsonl", every_n_steps=100)
    """

    def __init__(self, path: str | Path, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self.path = Path(path)

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        lines = "".join(json.dumps({key: plain(value) for key, value in record.items()}, default=str) + "\n" for record in records)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(lines)

    def state_dict(self) -> dict[str, Any]:
        # The file's length now: a run resumed from this state drops any line written after it
        # (those steps are trained again and their lines written again), so no line appears twice.
        return {**super().state_dict(), "bytes": self.path.stat().st_size if self.path.exists() else 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.path.exists() and self.path.stat().st_size > state["bytes"]:
            with self.path.open("r+b") as file:
                file.truncate(state["bytes"])
