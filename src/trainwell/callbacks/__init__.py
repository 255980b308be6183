"""Callbacks: hook into the training loop without subclassing the Trainer."""

from trainwell.callbacks.base import Callback, CallbackList
from trainwell.callbacks.csv_logger import CSVLogger
from trainwell.callbacks.data_info import SaveDataInfo
from trainwell.callbacks.early_stopping import EarlyStopping
from trainwell.callbacks.jsonl_logger import JSONLLogger
from trainwell.callbacks.lr_finder_plot import SaveLRFinderPlot
from trainwell.callbacks.metric_logger import MetricLogger
from trainwell.callbacks.mlflow_logger import MLflowLogger
from trainwell.callbacks.progress import ProgressBar
from trainwell.callbacks.tensorboard_logger import TensorBoardLogger
from trainwell.observe.monitor import Monitor

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "JSONLLogger",
    "MLflowLogger",
    "MetricLogger",
    "Monitor",
    "ProgressBar",
    "SaveDataInfo",
    "SaveLRFinderPlot",
    "TensorBoardLogger",
]
