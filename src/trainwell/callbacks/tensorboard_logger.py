"""TensorBoard logger: the run's metrics as TensorBoard event files (optional dependency)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainwell.callbacks.metric_logger import MetricLogger
from trainwell.extras import require


class TensorBoardLogger(MetricLogger):
    """Write step and epoch metrics as TensorBoard scalars, and events as text.

    Epoch records become ``epoch/<metric>`` scalars over the epoch number, step records
    ``step/<metric>`` scalars over the optimizer step, and events (skipped steps, failures)
    ``events/<name>`` text entries. View them with ``tensorboard --logdir RUN_DIR/tensorboard``.

    Args:
        log_dir: Directory for the event files (created on the first write).
        every_n_steps: Step record interval; None follows the trainer's ``log_every_steps``,
            0 writes no step records.

    Raises:
        DependencyError: the tensorboard package is not installed (``pip install 'trainwell[tensorboard]'``).

    Example:
        >>> logger = TensorBoardLogger("runs/demo/tensorboard")  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path, every_n_steps: int | None = None) -> None:
        require("tensorboard", "TensorBoardLogger", "tensorboard")
        super().__init__(every_n_steps)
        self.log_dir = Path(log_dir)
        self._writer: Any = None

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        for record in records:
            kind = record.get("event")
            if kind in ("epoch", "step"):
                position = record.get(kind) or 0
                for key, value in record.items():
                    if key not in ("event", "epoch", "step") and _is_number(value):
                        self._writer.add_scalar(f"{kind}/{key}", value, position)
            else:
                text = json.dumps(record, default=str)
                self._writer.add_text(f"events/{kind}", text, record.get("step") or 0)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
