"""Logging under the ``trainwell`` logger: the console, a run's ``train.log``, and the epoch line.

A run logs from its first line: what the data loader found ("Loaded ... rows", imputed values,
the task read from the target) comes before the run directory exists, because the directory is
created only once every check has passed. :func:`captured` keeps those records in memory;
:func:`log_to_file` writes them into ``train.log`` first when the directory is created, so the
file holds the whole run and a refused run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainwell.display import number, seconds
from trainwell.files.storage import writing

logger = logging.getLogger("trainwell")

_FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class ConsoleHandler(logging.StreamHandler):
    """Writes records to stderr through tqdm while a progress bar is shown, so that a line is never
    glued onto a bar: the bar is cleared, the line written, the bar drawn again below it."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm_module = sys.modules.get("tqdm")
        bars = getattr(getattr(tqdm_module, "tqdm", None), "_instances", None)
        if not bars:
            super().emit(record)
            return
        try:
            tqdm_module.tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise; handleError reports it
            self.handleError(record)


def setup_console_logging(level: int | None = None) -> None:
    """Show trainwell's messages on stderr (info and above), unless the application configured logging.

    The ``trainwell`` logger's level is set to INFO when unset, so ``train.log`` gets info lines
    whatever the console shows. A console handler is added only when neither this logger nor the
    root logger has handlers, so applications that configure logging themselves keep full
    control. ``level`` sets the console's level (that of a handler added here before, too):
    ``--quiet`` passes ``logging.WARNING``, so the console shows warnings and errors only while
    ``train.log`` still gets everything; None keeps the level set before (INFO at first).
    Silence trainwell entirely with ``logging.getLogger("trainwell").setLevel(logging.WARNING)``.
    """
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    ours = [handler for handler in logger.handlers if isinstance(handler, ConsoleHandler)]
    for handler in ours:
        if level is not None:
            handler.setLevel(level)
    if (
        not ours
        and not [h for h in logger.handlers if not isinstance(h, _Pending)]
        and not logging.getLogger().handlers
    ):
        handler = ConsoleHandler()
        handler.setLevel(logging.INFO if level is None else level)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class _Pending(logging.Handler):
    """Keeps records in memory until a run's train.log exists (:func:`log_to_file` takes them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.paused = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.paused:
            self.records.append(record)


@contextlib.contextmanager
def captured() -> Iterator[None]:
    """Keep trainwell's info records from here on, for the ``train.log`` of a run directory made later.

    Nested uses share the outer capture (each record is kept once). Nothing is written by this;
    records not taken by :func:`log_to_file` are dropped when the block ends.
    """
    if any(isinstance(handler, _Pending) for handler in logger.handlers):
        yield
        return
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    pending = _Pending()
    logger.addHandler(pending)
    try:
        yield
    finally:
        logger.removeHandler(pending)


def drop_captured() -> None:
    """Stop keeping records for a train.log this process will not write (another process's run directory)."""
    for keeper in logger.handlers:
        if isinstance(keeper, _Pending):
            keeper.records.clear()
            keeper.paused = True


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy trainwell's log records (info and above) into ``path`` for the duration of a block.

    Records kept by an enclosing :func:`captured` block are written first, with their own times.
    """
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    pending = [h for h in logger.handlers if isinstance(h, _Pending)]
    for keeper in pending:
        for record in keeper.records:
            handler.handle(record)
        keeper.records.clear()
        keeper.paused = True
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        for keeper in pending:
            keeper.paused = False


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch: the losses and metrics, lr, time and throughput."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for name in ("train_loss", "val_loss", "val_accuracy", "val_mae"):
        if name in row:
            parts.append(f"{name} {number(row[name])}")
    parts.append(f"lr {number(row['lr'])}")
    parts.append(f"{seconds(row['epoch_time_s'])} ({number(round(row['samples_per_s']))} samples/s)")
    if row.get("nonfinite_steps"):
        parts.append(f"{row['nonfinite_steps']} non-finite steps skipped")
    return "  ".join(parts)
