"""Logging under the ``trainwell`` logger: info level by default, a run's ``train.log``, and what a run logs."""

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


def log_run_start(trainer: Any, batch_size: int) -> dict[str, Any]:
    """Log what is about to be trained, how, and on what; return it as the run's ``run_info``."""
    from trainwell.loop.optimizers import is_fused
    from trainwell.system import system_info

    params = sum(p.numel() for p in trainer._parameters)
    optimizer = type(trainer.optimizer).__name__ + (" (fused)" if is_fused(trainer.optimizer) else "")
    steps = trainer.steps_per_epoch if trainer.steps_per_epoch is not None else "?"
    task = trainer.task.name if trainer.task else "custom"
    logger.info(
        "Training %s (%s trainable parameters) on %s in %s: %d epochs x %s steps of batch %d, %s, "
        "lr %.3g (%s schedule), task %s.",
        type(trainer.module).__name__,
        f"{params:,}",
        trainer.device,
        trainer.precision.name,
        trainer.config.epochs,
        steps,
        batch_size,
        optimizer,
        trainer.peak_lr,
        trainer.config.schedule,
        task,
    )
    info = system_info(trainer.device, trainer.precision.name)
    logger.info("Model:\n%s\nSystem: %s", trainer.model_summary, ", ".join(f"{key} {value}" for key, value in info.items()))
    run = {"batch_size": batch_size, "steps_per_epoch": trainer.steps_per_epoch, "peak_lr": trainer.peak_lr, "parameters": params}
    session = getattr(trainer, "distributed", None)
    if session is not None:  # under torchrun: batch_size is per process
        run.update(world_size=session.world_size, global_batch_size=batch_size * session.world_size)
    return {**info, **run, "task": task}


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
