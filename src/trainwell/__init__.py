"""trainwell: train PyTorch models well, with the best practices on by default.

    >>> import trainwell
    >>> result = trainwell.fit(model, train_loader, val_loader=val_loader, epochs=10, lr=1e-3)  # doctest: +SKIP

Heavy modules (torch, the trainer) load on first use, so ``import trainwell`` and
``trainwell --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import (
    CheckpointError,
    CheckpointMismatchError,
    ConfigError,
    DataError,
    DivergenceError,
    ModelError,
    OutOfMemoryError,
    RunDirLockedError,
    StorageError,
    TrainingInterrupted,
    TrainwellError,
)
from trainwell.version import __version__ as __version__

if TYPE_CHECKING:
    from trainwell.callbacks import Callback
    from trainwell.config import TrainConfig
    from trainwell.files.checkpoint import load_checkpoint, save_checkpoint
    from trainwell.loop.fit import fit
    from trainwell.loop.lr_finder import find_lr
    from trainwell.loop.result import FitResult
    from trainwell.loop.trainer import Trainer
    from trainwell.use.evaluation import evaluate
    from trainwell.use.inference import load_model

_LAZY = {
    "fit": "trainwell.loop.fit",
    "Trainer": "trainwell.loop.trainer",
    "FitResult": "trainwell.loop.result",
    "TrainConfig": "trainwell.config",
    "Callback": "trainwell.callbacks",
    "find_lr": "trainwell.loop.lr_finder",
    "save_checkpoint": "trainwell.files.checkpoint",
    "load_checkpoint": "trainwell.files.checkpoint",
    "evaluate": "trainwell.use.evaluation",
    "load_model": "trainwell.use.inference",
}
_SUBMODULES = {"callbacks", "data", "models"}

__all__ = [
    "Callback",
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "FitResult",
    "ModelError",
    "OutOfMemoryError",
    "RunDirLockedError",
    "StorageError",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "TrainwellError",
    "evaluate",
    "find_lr",
    "fit",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"trainwell.{name}")
    raise AttributeError(f"module 'trainwell' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)
