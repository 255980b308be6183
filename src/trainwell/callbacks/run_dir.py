"""The callbacks that fill a run directory, in the order they must run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from trainwell.callbacks.base import Callback
from trainwell.callbacks.confusion_matrix import ConfusionMatrixLogger
from trainwell.callbacks.csv_logger import CSVLogger
from trainwell.callbacks.jsonl_logger import JSONLLogger
from trainwell.callbacks.learning_curves import LearningCurves
from trainwell.callbacks.run_report import RunReport
from trainwell.callbacks.tensorboard_logger import TensorBoardLogger
from trainwell.files.rundir import RunPaths
from trainwell.observe.monitor import Monitor


def run_dir_callbacks(
    run_dir: Path, loggers: Iterable[str] = (), monitor: Monitor | None = None, mlflow_tracking_uri: str | None = None
) -> list[Callback]:
    """metrics.jsonl, the extra ``loggers`` ("csv", "tensorboard", "mlflow"), confusion.json (of the best epoch by
    ``monitor``), curves.png, then the doctor and report.html, which read what the others wrote."""
    paths = RunPaths(Path(run_dir))
    callbacks: list[Callback] = [JSONLLogger(paths.metrics)]
    if "csv" in loggers:
        callbacks.append(CSVLogger(paths.metrics_csv))
    if "tensorboard" in loggers:
        callbacks.append(TensorBoardLogger(paths.tensorboard))
    if "mlflow" in loggers:
        from trainwell.callbacks.mlflow_logger import MLflowLogger

        callbacks.append(MLflowLogger(paths.mlflow, tracking_uri=mlflow_tracking_uri))
    callbacks += [ConfusionMatrixLogger(paths.confusion, monitor), LearningCurves(paths.root), RunReport(paths.root)]
    return callbacks
