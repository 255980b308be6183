"""Callbacks: hook into the training loop without subclassing the Trainer."""

from trainwell.callbacks.base import Callback, CallbackList
from trainwell.callbacks.data_info import SaveDataInfo
from trainwell.callbacks.early_stopping import EarlyStopping
from trainwell.callbacks.jsonl_logger import JSONLLogger
from trainwell.callbacks.monitor import Monitor
from trainwell.callbacks.progress import ProgressBar

__all__ = ["Callback", "CallbackList", "EarlyStopping", "JSONLLogger", "Monitor", "ProgressBar", "SaveDataInfo"]
