"""SaveDataInfo: write what was learned from the data (``data.json``) into the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.base import Callback

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView


class SaveDataInfo(Callback):
    """Save a :class:`~trainwell.data.DataInfo` as ``<run_dir>/data.json`` when training begins.

    The file holds the normalisation statistics of the training split, the class names and every
    other preprocessing value (vocabulary, categorical encodings, image size), so evaluation and
    prediction prepare inputs exactly as training did. Written once the run directory has been
    created (and checked not to hold another run); without a run directory nothing is written.

    Args:
        info: The ``info`` of :func:`trainwell.data.load`'s splits.

    Example:
        >>> from trainwell.data import load
        >>> splits = load("iris")
        >>> callback = SaveDataInfo(splits.info)
        >>> # trainwell.fit(model, *splits.loaders(), run_dir="runs/iris", callbacks=[callback])
    """

    def __init__(self, info: Any) -> None:
        self.info = info
        self.path: Path | None = None

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        from trainwell.data.info_file import save_data_info
        from trainwell.system import is_primary_process

        run_dir = trainer.config.run_dir
        if run_dir is not None and is_primary_process():
            self.path = save_data_info(self.info, run_dir)
