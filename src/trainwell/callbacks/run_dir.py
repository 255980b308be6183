"""The callbacks that fill a run directory, in the order they must run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trainwell.callbacks.base import Callback
from trainwell.callbacks.confusion_matrix import CONFUSION_FILE, ConfusionMatrixLogger
from trainwell.callbacks.csv_logger import CSVLogger
from trainwell.callbacks.jsonl_logger import JSONLLogger
from trainwell.callbacks.learning_curves import LearningCurves
from trainwell.callbacks.run_report import RunReport
from trainwell.callbacks.tensorboard_logger import TensorBoardLogger


def run_dir_callbacks(run_dir: Path, loggers: Iterable[str] = ()) -> list[Callback]:
    """metrics.jsonl, the extra ``loggers`` ("csv", "tensorboard"), confusion.json, curves.png,
    then the doctor and report.html, which read what the others wrote."""
    callbacks: list[Callback] = [JSONLLogger(run_dir / "metrics.jsonl")]
    if "csv" in loggers:
        callbacks.append(CSVLogger(run_dir / "metrics.csv"))
    if "tensorboard" in loggers:
        callbacks.append(TensorBoardLogger(run_dir / "tensorboard"))
    callbacks += [ConfusionMatrixLogger(run_dir / CONFUSION_FILE), LearningCurves(run_dir), RunReport(run_dir)]
    return callbacks
