"""Data: fast in-memory batches and bundled datasets."""

from trainwell.data.bundled import BUNDLED, DataInfo, Splits, load_bundled
from trainwell.data.loader import TensorLoader

__all__ = ["BUNDLED", "DataInfo", "Splits", "TensorLoader", "load_bundled"]
