"""The errors trainwell raises.

Every error derives from :class:`TrainwellError`. Mistakes in what a user passed in also derive
from ``ValueError`` or ``TypeError``, so ordinary ``except`` clauses keep working.
"""


class TrainwellError(Exception):
    """Base class of every error raised by trainwell."""


class ConfigError(TrainwellError, ValueError):
    """A configuration value is out of range, of the wrong type, or not a known option.

    Attributes:
        problems: pydantic's structured report of each problem, when validation found them.
    """

    problems: list = []


class ModelError(TrainwellError, TypeError):
    """The object passed as ``model`` cannot be trained (not an ``nn.Module``, no trainable parameters)."""


class DataError(TrainwellError, ValueError):
    """A loader, a batch or its targets do not fit what training needs."""


class DivergenceError(TrainwellError, RuntimeError):
    """Training produced non-finite losses or gradients and did not recover."""


class DependencyError(TrainwellError, ImportError):
    """An optional feature needs a package that is not installed; the message says what to install."""
