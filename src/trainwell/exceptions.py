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


class CheckpointError(TrainwellError, RuntimeError):
    """A checkpoint could not be written, or a file is not a loadable checkpoint (truncated,
    corrupted, unsafe to unpickle, or from a newer format)."""


class StorageError(TrainwellError, OSError):
    """A file or directory trainwell writes cannot be written: a read-only file system, a permission, a full disk.

    The message names the file, the reason and the fix; ``except OSError`` clauses catch it too.
    """


class RunDirLockedError(TrainwellError, RuntimeError):
    """Another process is using the run directory (it holds the directory's lock): the message names its pid and host."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint does not fit the model it is loaded into (different parameter names or shapes)."""


class TrainingInterrupted(TrainwellError):
    """Training stopped on SIGTERM or SIGINT after committing a checkpoint to resume from.

    Attributes:
        signal_number: The signal that stopped training (``signal.SIGTERM`` or ``signal.SIGINT``).
        checkpoint: The committed checkpoint to resume from.
        run_dir: The run directory to resume in.
    """

    def __init__(self, message: str, signal_number: int, checkpoint=None, run_dir=None) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.checkpoint = checkpoint
        self.run_dir = run_dir


class OutOfMemoryError(TrainwellError, MemoryError):
    """A training step ran out of accelerator memory even when split into single-sample micro-batches."""


class ExportError(TrainwellError, RuntimeError):
    """A model could not be exported in the format asked for, or the exported model's outputs differ from
    the original's beyond the tolerance; the message says why and which format to use instead."""
