"""Logging under the ``trainwell`` logger: info level by default, a run's ``train.log``, and the epoch line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("trainwell")

_FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_console_logging() -> None:
    """Show trainwell's info messages on stderr unless the application configured logging.

    The ``trainwell`` logger's level is set to INFO when unset. A console handler is added only
    when neither this logger nor the root logger has handlers, so applications that configure
    logging themselves keep full control. Silence trainwell with
    ``logging.getLogger("trainwell").setLevel(logging.WARNING)``.
    """
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy trainwell's log records (info and above) into ``path`` for the duration of a block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch: the losses and metrics, lr, time and throughput."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for name in ("train_loss", "val_loss", "val_accuracy", "val_mae"):
        if name in row:
            parts.append(f"{name} {row[name]:.4f}")
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['epoch_time_s']:.1f}s ({row['samples_per_s']:,.0f} samples/s)")
    if row.get("nonfinite_steps"):
        parts.append(f"{row['nonfinite_steps']} non-finite steps skipped")
    return "  ".join(parts)
