"""TensorBoard logger: the run's metrics as TensorBoard event files (optional dependency)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.metric_logger import MetricLogger, flat_options
from trainwell.extras import require
from trainwell.observe.monitor import is_number

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

# Metrics recorded for training and for validation, drawn as two lines of one chart: the
# train/ and val/ runs hold the same tag, as Keras's TensorBoard callback writes them.
PAIRED = {"loss": ("train_loss", "val_loss")}
# The metrics the HParams dashboard shows beside each run's hyperparameters.
HPARAM_METRICS = ("epoch/val_loss", "epoch/train_loss", "epoch/val_accuracy", "epoch/val_mae")


class TensorBoardLogger(MetricLogger):
    """Write step and epoch metrics as TensorBoard scalars, the config as hyperparameters, events as text.

    Epoch records become ``epoch/<metric>`` scalars over the epoch number, step records
    ``step/<metric>`` scalars over the optimizer step, and events (skipped steps, failures)
    ``events/<name>`` text entries. The training and validation loss are also written as the one
    tag ``epoch/loss`` in the sub-runs ``train`` and ``val``, so that TensorBoard draws them on one
    chart; the run's options are logged as hyperparameters (the HParams tab), with the final
    losses and metrics beside them. View them with ``tensorboard --logdir RUN_DIR/tensorboard``.

    Args:
        log_dir: Directory for the event files (created on the first write).
        every_n_steps: Step record interval; None follows the trainer's ``log_every_steps``,
            0 writes no step records.

    Raises:
        DependencyError: the tensorboard package is not installed (``pip install 'trainwell[tensorboard]'``).

    Example:
        >>> logger = TensorBoardLogger("runs/demo/tensorboard")  # doctest: +SKIP
    """

    def __init__(self, log_dir: str | Path, every_n_steps: int | None = None) -> None:
        require("tensorboard", "TensorBoardLogger", "tensorboard")
        super().__init__(every_n_steps)
        self.log_dir = Path(log_dir)
        self._writers: dict[str, Any] = {}

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        super().on_train_begin(trainer, **kwargs)
        to_yaml = getattr(trainer.config, "to_yaml_dict", None)
        if to_yaml is not None:
            self._write_hparams(flat_options(to_yaml()))

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        writer = self._writer("")
        for record in records:
            kind = record.get("event")
            if kind in ("epoch", "step"):
                position = record.get(kind) or 0
                for key, value in record.items():
                    if key not in ("event", "epoch", "step") and is_number(value):
                        writer.add_scalar(f"{kind}/{key}", value, position)
                if kind == "epoch":
                    self._write_pairs(record, position)
            else:
                writer.add_text(f"events/{kind}", json.dumps(record, default=str), record.get("step") or 0)
        for each in self._writers.values():
            each.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _write_pairs(self, record: dict[str, Any], epoch: int) -> None:
        for tag, (train_key, val_key) in PAIRED.items():
            for run, key in (("train", train_key), ("val", val_key)):
                if is_number(record.get(key)):
                    self._writer(run).add_scalar(f"epoch/{tag}", record[key], epoch)

    def _write_hparams(self, hparams: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        # Written into the run's own event file (SummaryWriter.add_hparams would open a new
        # sub-run per call), so the HParams tab finds the metrics under their own tags.
        experiment, start, end = hparams_summary(hparams, {name: 0.0 for name in HPARAM_METRICS})
        file_writer = self._writer("").file_writer
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)

    def _writer(self, run: str) -> Any:
        if run not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            self._writers[run] = SummaryWriter(log_dir=str(self.log_dir / run if run else self.log_dir))
        return self._writers[run]
