"""Data: one call from a dataset name, file, folder or arrays to checked splits; fast in-memory batches.

    >>> from trainwell.data import load
    >>> splits = load("digits")
    >>> train_loader, val_loader = splits.loaders(batch_size=64)
"""

from trainwell.data.bundled import BUNDLED, DataInfo, Splits, load_bundled
from trainwell.data.info_file import DATA_INFO_FILE, load_data_info, save_data_info
from trainwell.data.load import load
from trainwell.data.loader import TensorLoader
from trainwell.data.splits import check_labels_fit

__all__ = [
    "BUNDLED",
    "DATA_INFO_FILE",
    "DataInfo",
    "Splits",
    "TensorLoader",
    "check_labels_fit",
    "load",
    "load_bundled",
    "load_data_info",
    "save_data_info",
]
