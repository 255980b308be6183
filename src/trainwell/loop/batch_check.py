"""Every batch's targets checked against the model's outputs, at the cost of a reduction per step.

The first batch is checked closely before training (:mod:`trainwell.loop.preflight`); a bad
label or shape can still come later: a label 3 for 3 classes first appearing in batch 5, or a
batch whose targets have another shape. Unchecked, the loss fails deep inside torch (``IndexError:
Target 3 is out of bounds``; on CUDA a device-side assert that ends the process) or, worse,
broadcasts silently. So every batch the built-in step computes a loss for is checked here:

- **shapes and dtypes** against what the task expects (:meth:`Task.target_shape_problem`): host
  metadata, free;
- **values** against the task's range (:meth:`Task.target_range`: class indices below the class
  count, binary labels in [0, 1]), with one ``aminmax`` reduction. Where steps are judged on the
  host (the CPU), its result is read at once and a bad batch is refused before its loss is
  computed. Where they are judged on the device, nothing is read per step: a bad batch's targets
  are replaced by harmless ones and its update is skipped (:class:`~trainwell.loop.step.StepRunner`
  reads :attr:`BatchCheck.step_bad`), and the first bad batch's index and value are read with the
  guard's counters, at the logging interval (:meth:`BatchCheck.flush`).

Either way a bad batch ends the run with a :class:`~trainwell.exceptions.DataError` naming the
loader, the batch, the offending value and the fix; the Trainer first commits a checkpoint of
the last good state (the bad batch never changed the weights), so training can resume once the
data is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from trainwell.data import batches
from trainwell.exceptions import DataError
from trainwell.files.storage import first_line
from trainwell.loop.tasks import IGNORE_INDEX

if TYPE_CHECKING:
    from trainwell.loop.tasks import Task

logger = logging.getLogger("trainwell")


class BatchCheck:
    """Checks each batch's targets against the task, on the host or on the device.

    Args:
        task: Returns the run's task (decided on the first batch), or None while there is none.
        on_device: Keep the verdict on the device, read by :meth:`flush`, instead of reading it at once.

    Attributes:
        step_bad: Device mode: whether a batch of the step under way was bad (a 0-dim bool tensor,
            or None), for the step runner to skip its update; the runner resets it.
        first_inputs: The first batch's :func:`~trainwell.data.batches.sample_shapes` (set by the
            trainer), against which a batch the model fails on is compared.

    Example:
        >>> from trainwell.loop.tasks import Task
        >>> check = BatchCheck(lambda: Task("classification", None, "multiclass", classes=3), on_device=False)
        >>> check.at("train_loader", batch=4, epoch=1)
        >>> check(torch.zeros(2, 3), torch.tensor([0, 3]))
        Traceback (most recent call last):
        ...
        trainwell.exceptions.DataError: train_loader batch 4 (epoch 1) holds the target 3, but the model outputs 3 classes (labels 0 to 2): fix the labels of that batch (or give the model's last layer more outputs).
    """

    def __init__(self, task: Callable[[], Task | None], on_device: bool) -> None:
        self.task = task
        self.on_device = on_device
        self.step_bad: torch.Tensor | None = None
        self._where: tuple[str, int, int | None] = ("train_loader", 0, None)
        self._counting = False
        self.first_inputs: Any = None
        self._found: tuple[str, int | None, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def at(self, source: str, batch: int = 0, epoch: int | None = None, counting: bool = False) -> None:
        """Say where the next batches come from: ``source``'s batch ``batch`` (and each call the next one when ``counting``).

        Device mode: where the source changes (validation inside an epoch, training after it), the
        verdicts pending are read first (:meth:`flush`, one read per change, none per step), so a bad
        batch is named with its own loader, and one loader's verdicts never skip another's step.

        Raises:
            DataError: a bad batch of the previous source was pending.
        """
        if source != self._where[0]:
            self.flush()
            self.step_bad = None
        self._where = (source, batch, epoch)
        self._counting = counting

    def __call__(self, outputs: Any, targets: Any) -> Any:
        """Check ``targets`` against ``outputs``; return them (on the device, harmless ones in place of a bad batch's).

        Raises:
            DataError: the shapes do not fit (always at once), or, on the host, a value is out of range.
        """
        source, batch, epoch = self._where
        if self._counting:
            self._where = (source, batch + 1, epoch)
        task = self.task()
        if task is None or not isinstance(targets, torch.Tensor) or not isinstance(outputs, torch.Tensor):
            return targets
        problem = task.target_shape_problem(outputs, targets)
        if problem is not None:
            raise DataError(f"{_place(source, batch, epoch)}: {problem}. Fix the targets of that batch.")
        bounds = task.target_range()
        if bounds is None or targets.numel() == 0 or targets.dtype == torch.bool:
            return targets
        if self.on_device:
            return self._on_device(task, targets, bounds, source, batch, epoch)
        extremes = torch.aminmax(targets)
        smallest, largest = torch.stack([extremes.min, extremes.max]).tolist()  # one read
        if task.kind == "multiclass" and smallest == IGNORE_INDEX:
            counted = targets[targets != IGNORE_INDEX]
            smallest = counted.min().item() if counted.numel() else bounds[0]
        if smallest < bounds[0] or largest > bounds[1]:
            value = largest if largest > bounds[1] else smallest
            raise DataError(_value_message(task, value, source, batch, epoch))
        return targets

    def _on_device(
        self, task: Task, targets: torch.Tensor, bounds: tuple[float, float], source: str, batch: int, epoch: int | None
    ) -> torch.Tensor:
        counted = torch.where(targets == IGNORE_INDEX, bounds[0], targets) if task.kind == "multiclass" else targets
        smallest, largest = torch.aminmax(counted)
        too_high = largest > bounds[1]
        bad = too_high | (smallest < bounds[0])
        value = torch.where(too_high, largest, smallest).double()
        if self._found is None:
            self._found = (source, epoch, bad.clone(), torch.full_like(value, batch), value)
        else:
            first_source, first_epoch, found, found_batch, found_value = self._found
            first = bad & ~found
            self._found = (
                first_source,
                first_epoch,
                found | bad,
                torch.where(first, batch, found_batch),
                torch.where(first, value, found_value),
            )
        self.step_bad = bad if self.step_bad is None else self.step_bad | bad
        # The loss must never see an out-of-range class index (on CUDA a device-side assert ends the process).
        return targets.masked_fill(bad, 0)

    def refuse_if_reshaped(self, error: Exception, inputs: Any) -> None:
        """The model failed on a batch: if the batch's inputs differ in shape from the first batch's, say so.

        Raises:
            DataError: naming the batch, both shapes and the model's error (otherwise nothing happens,
                and the caller re-raises ``error``).
        """
        if isinstance(error, (DataError, torch.OutOfMemoryError)) or self.first_inputs is None:
            return
        shapes = batches.sample_shapes(inputs)
        if shapes == self.first_inputs:
            return
        source, batch, epoch = self._where
        raise DataError(
            f"{_place(source, batch, epoch)}: the model failed on its inputs ({batches.describe(inputs)}: one sample "
            f"{shapes}, while the first batch's was {self.first_inputs}): {first_line(error)}. Fix that batch "
            "(every sample must have the shape the model takes)."
        ) from error

    def flush(self) -> None:
        """Device mode: read whether a bad batch was seen since the last flush (one sync), and refuse it.

        Raises:
            DataError: naming the first bad batch and its value.
        """
        if self._found is None:
            return
        source, epoch, found, batch, value = self._found
        self._found = None
        bad, batch, value = torch.stack([found.double(), batch, value]).tolist()
        if bad:
            raise DataError(_value_message(self.task(), value, source, int(batch), epoch))


def stopped_at_bad_batch(error: DataError, trainer: Any) -> DataError:
    """A training batch was refused: commit a checkpoint of the last good state (the bad batch changed nothing) and name it.

    Args:
        error: The refusal.
        trainer: The :class:`~trainwell.Trainer` inside ``fit`` (its ``checkpointing`` and position).

    Returns:
        The error to end the run with: ``error`` itself where no checkpoint is written (no run
        directory, not inside a training epoch, not the writing process), else one that names the
        checkpoint to resume from.
    """
    if trainer.checkpointing is None or trainer.batch_in_epoch is None:
        return error
    try:
        path = trainer.checkpointing.save(trainer, kind="interrupt")
    except Exception as failure:  # noqa: BLE001 - the bad batch is the error to report
        logger.warning("Could not commit a checkpoint before stopping on the bad batch: %s", failure)
        return error
    if path is None:
        return error
    return DataError(
        f"{error} A checkpoint of the last good state is committed ({path}): once the data is fixed, "
        "resume from it with resume='auto' (--resume auto)."
    )


def _place(source: str, batch: int, epoch: int | None) -> str:
    return f"{source} batch {batch}" + (f" (epoch {epoch})" if epoch is not None else "")


def _value_message(task: Task, value: float, source: str, batch: int, epoch: int | None) -> str:
    place = _place(source, batch, epoch)
    value = f"{int(value)}" if float(value).is_integer() else f"{value:g}"
    if task.kind == "multiclass":
        return (
            f"{place} holds the target {value}, but the model outputs {task.classes} classes (labels 0 to "
            f"{task.classes - 1}): fix the labels of that batch (or give the model's last layer more outputs)."
        )
    return (
        f"{place} holds the target {value}, but binary targets must lie in [0, 1] (one logit per target): "
        "fix the labels of that batch (or set task='regression' if they are real values)."
    )
