"""``trainwell.fit``: the whole training loop in one call, with the best practices on by default."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from trainwell.callbacks import Callback
from trainwell.config import TrainConfig
from trainwell.loop.result import FitResult
from trainwell.loop.trainer import Trainer


def fit(
    model: nn.Module,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    *,
    config: TrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
    resume: str | Path | None = None,
    **options: Any,
) -> FitResult:
    """Train ``model`` with the best practices on by default, in one call.

    Args:
        model: Any ``nn.Module`` with trainable parameters (trained in place).
        train_loader: A non-empty, re-iterable source of ``(inputs, targets)`` batches.
        val_loader: Validation batches (strongly recommended).
        config: A :class:`TrainConfig`; keyword options override its fields.
        callbacks: Extra callbacks.
        resume: ``"auto"`` (the newest good checkpoint of ``run_dir``, if any), a checkpoint file
            or a run directory to continue from; None starts afresh.
        **options: Any :class:`TrainConfig` field: ``epochs`` (1..1000, default 10), ``lr``
            (1e-6..1, default 1e-3), ``weight_decay``, ``schedule``, ``precision``,
            ``max_grad_norm``, ``early_stopping_patience``, ``seed``, ``device``, ``task``,
            ``loss_fn``, ``run_dir``, ...

    Returns:
        A :class:`FitResult` with ``history``, ``best``, ``stopped_early``, ``run_dir``.

    Raises:
        ConfigError, ModelError, DataError: before training, for invalid input.
        DivergenceError: when losses stay non-finite after every rollback.
        CheckpointError: a checkpoint to resume from is corrupt, or one could not be written.
        TrainingInterrupted: SIGTERM or SIGINT stopped training after committing a checkpoint.

    Example:
        >>> import torch, trainwell
        >>> from trainwell.data import TensorLoader
        >>> x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> result = trainwell.fit(model, TensorLoader(x, y, seed=0), TensorLoader(x, y, shuffle=False),
        ...                        epochs=2, progress=False)
        >>> len(result.history)
        2
    """
    return Trainer(config, callbacks=callbacks, **options).fit(model, train_loader, val_loader, resume=resume)
