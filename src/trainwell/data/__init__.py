"""Data: fast in-memory batches and bundled datasets."""

from trainwell.data.bundled import BUNDLED, DESCRIPTIONS, DataInfo, Splits, load_bundled
from trainwell.data.loader import TensorLoader

__all__ = ["BUNDLED", "DESCRIPTIONS", "DataInfo", "Splits", "TensorLoader", "load_bundled"]
