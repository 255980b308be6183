"""Models with deliberate weight initialisation, a registry to build them by name, and summaries.

    >>> from trainwell import models
    >>> models.names()
    ['mlp', 'cnn', 'lstm', 'gru', 'rnn', 'transformer']

The registry (``names``, ``build``, ``describe``) loads without torch; the model classes load
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trainwell.models.registry import MODELS, build, describe, names

if TYPE_CHECKING:
    from trainwell.models.cnn import CNN
    from trainwell.models.init import init_weights
    from trainwell.models.mlp import MLP
    from trainwell.models.rnn import RNN
    from trainwell.models.summarize import summary
    from trainwell.models.transformer import Transformer

_LAZY = {
    "CNN": "trainwell.models.cnn",
    "MLP": "trainwell.models.mlp",
    "RNN": "trainwell.models.rnn",
    "Transformer": "trainwell.models.transformer",
    "init_weights": "trainwell.models.init",
    "summary": "trainwell.models.summarize",
}

__all__ = ["CNN", "MLP", "MODELS", "RNN", "Transformer", "build", "describe", "init_weights", "names", "summary"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainwell.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
