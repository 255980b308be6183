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

    Non-finite numbers are written as ``null`` so that every line is standard JSON.

    Example:
        >>> logger = JSONLLogger("runs/demo/metrics.jsonl")
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, Any], **kwargs: Any) -> None:
        record = {"event": "epoch", **{key: _plain(value) for key, value in metrics.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
