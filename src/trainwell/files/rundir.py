"""The run directory: every path of a run, named once, and the refusal to mix two runs in one.

<run_dir>/config.yaml       the resolved config (re-runnable as is)
<run_dir>/metrics.jsonl     one JSON object per step, epoch and event
<run_dir>/metrics.csv       the same as a table (loggers=["csv"])
<run_dir>/tensorboard/      TensorBoard event files (loggers=["tensorboard"])
<run_dir>/mlruns/           the local MLflow store (loggers=["mlflow"] without a tracking URI)
<run_dir>/train.log         the log at info level
<run_dir>/model.txt         the model's layers, output shapes and parameter counts
<run_dir>/data.json         what was learned from the data (trainwell.data.save_data_info)
<run_dir>/checkpoints/      exact-resume checkpoints, each committed by a manifest
<run_dir>/checkpoints/last.pt, best.pt   the newest and the best of them, under stable names
<run_dir>/curves.png        learning curves
<run_dir>/confusion.json    the validation confusion matrix of the weights the run ended with
<run_dir>/report.html       the run at a glance, with the doctor's findings
<run_dir>/lr_find.png       the LR finder's curve (--lr auto)
<run_dir>/.lock             held by the process writing the run (files.lock), with its pid and host
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError
from trainwell.files.atomic import write_yaml
from trainwell.files.storage import writing

# The stable names of the newest and the best checkpoint, in any checkpoint directory.
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


@dataclass(frozen=True)
class RunPaths:
    """Where each file of the run directory ``root`` lives.

    Example:
        >>> RunPaths(Path("runs/exp1")).metrics.as_posix()
        'runs/exp1/metrics.jsonl'
    """

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlruns"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def model_summary(self) -> Path:
        return self.root / "model.txt"

    @property
    def data_info(self) -> Path:
        return self.root / "data.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def lr_find(self) -> Path:
        return self.root / "lr_find.png"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def holds_a_run(self) -> list[Path]:
        """The files whose presence means the directory already holds a run."""
        return [path for path in (self.metrics, self.config) if path.exists()]


def check_run_dir(run_dir: Path, resuming: bool = False) -> None:
    """Refuse a ``run_dir`` that cannot take a new run, creating nothing.

    Args:
        run_dir: The run directory (it may not exist yet).
        resuming: The run continues the one ``run_dir`` holds (the one exception to the refusal).

    Raises:
        ConfigError: ``run_dir`` is a file, or already holds another run's files.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir='{run_dir}' is a file: expected a directory (new or empty).")
    existing = [path.name for path in RunPaths(run_dir).holds_a_run()]
    if existing and not resuming:
        raise ConfigError(
            f"run_dir='{run_dir}' already holds a run ({', '.join(existing)}): choose a new directory "
            "(e.g. --out runs/<new-name>) or remove the old one, so that no run's record is overwritten. "
            "To continue that run from its last checkpoint, pass resume='auto' (--resume auto)."
        )


def prepare_run_dir(run_dir: Path, config: dict[str, Any], resuming: bool = False) -> Path:
    """Create ``run_dir`` and write its ``config.yaml``, refusing to mix two runs in one directory.

    Args:
        run_dir: The run directory.
        config: The resolved config, written to ``config.yaml``.
        resuming: The run continues the one ``run_dir`` holds (the one exception to the refusal).

    Raises:
        ConfigError: ``run_dir`` is a file, or already holds another run's files.
        StorageError: ``run_dir`` cannot be created or written (read-only, full disk, permission).
    """
    check_run_dir(run_dir, resuming)
    with writing(run_dir, "create the run directory"):
        run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(RunPaths(run_dir).config, config)
    return run_dir
