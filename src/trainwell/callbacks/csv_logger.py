"""CSV logger: the same records as metrics.jsonl, as a table for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from trainwell.callbacks.metric_logger import MetricLogger, plain
from trainwell.files.atomic import write_text
from trainwell.files.storage import writing


class CSVLogger(MetricLogger):
    """Append step, epoch and event records to a CSV file with one column per key.

    The first columns are ``event``, ``epoch`` and ``step``; a record leaves the columns it does
    not have empty. The ``run_start`` record (system info) is left to metrics.jsonl. Columns appear as keys first occur (validation metrics after the first
    epoch, an event's fields when it happens): the file is then rewritten once with the wider
    header, through a temporary file, so it is always a complete table. Non-finite numbers are
    written as empty cells.

    Args:
        path: The CSV file (its directory is created; an existing file is continued).
        every_n_steps: Step record interval; None follows the trainer's ``log_every_steps``,
            0 writes no step records.

    Example:
        >>> logger = CSVLogger("runs/demo/metrics.csv")
    """

    def __init__(self, path: str | Path, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self.path = Path(path)
        self._columns: list[str] | None = None

    def write(self, records: list[dict[str, Any]]) -> None:
        # The run's system info would add a dozen columns to every row; metrics.jsonl keeps it.
        records = [record for record in records if record.get("event") != "run_start"]
        if not records:
            return
        with writing(self.path):
            if self._columns is None:
                self._columns = self._existing_columns()
            new = [key for record in records for key in record if key not in self._columns]
            if new:
                self._widen(list(dict.fromkeys(new)))
            with self.path.open("a", encoding="utf-8", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self._columns, restval="")
                writer.writerows({key: plain(value) for key, value in record.items()} for record in records)

    def _existing_columns(self) -> list[str]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with self.path.open(encoding="utf-8", newline="") as file:
            return next(csv.reader(file), [])

    def _widen(self, new_columns: list[str]) -> None:
        """Rewrite the file with ``new_columns`` added to its header (atomically)."""
        columns = self._columns + new_columns
        for first in reversed(("event", "epoch", "step")):
            if first in columns:
                columns.remove(first)
                columns.insert(0, first)
        rows: list[dict[str, str]] = []
        if self.path.exists():
            with self.path.open(encoding="utf-8", newline="") as file:
                rows = list(csv.DictReader(file))
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue())
        self._columns = columns
