"""Validation metrics through torchmetrics: F1, precision, recall and a confusion matrix for
classification; RMSE and R² for regression.

:class:`ValidationMetrics` keeps each validation batch's predictions and targets on the device
(appending a tensor never waits for the device) and computes every metric once, at the end of
the pass, so validation gains no per-batch host synchronisation. torchmetrics is imported only
then, so ``import trainwell`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from trainwell.loop.tasks import IGNORE_INDEX

if TYPE_CHECKING:
    from trainwell.loop.tasks import Task

# Beyond this many classes a confusion matrix is too large to read in a report, and copying
# it to the host every epoch would cost more than it tells.
CONFUSION_MAX_CLASSES = 100


class ValidationMetrics:
    """Collects one validation pass's predictions and computes the task's extra metrics.

    Args:
        task: The task the trainer decided from the first batch.

    Attributes:
        confusion_matrix: After :meth:`compute`, for classification with at most
            ``CONFUSION_MAX_CLASSES`` classes: ``matrix[true][predicted]`` counts as nested lists
            of ints; otherwise None.

    Example:
        >>> from trainwell.loop.tasks import infer_task
        >>> outputs, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1])
        >>> task = infer_task("auto", None, outputs, targets)
        >>> metrics = ValidationMetrics(task)
        >>> metrics.update(outputs, targets)
        >>> round(metrics.compute()["val_recall"], 2), metrics.confusion_matrix
        (0.75, [[1, 0], [1, 1]])
    """

    def __init__(self, task: Task) -> None:
        self.task = task
        self._predictions: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []
        self._classes: int | None = None
        self.confusion_matrix: list[list[int]] | None = None

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Keep one batch's predictions (class labels, or values for regression) on the device."""
        targets = self.task.prepare_targets(outputs, targets).detach()
        outputs = outputs.detach()
        if self.task.kind == "multiclass":
            self._classes = outputs.shape[1]
            predictions = outputs.argmax(dim=1)
        elif self.task.kind == "binary":
            self._classes = 2
            predictions, targets = (outputs > 0).long(), (targets > 0.5).long()
        else:
            predictions = outputs.float()
            targets = targets.float()
        self._predictions.append(
            predictions.reshape(-1) if self._classes else predictions.reshape(len(predictions), -1)
        )
        self._targets.append(targets.reshape(-1) if self._classes else targets.reshape(len(targets), -1))

    def gather(self, all_gather: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the predictions and targets kept so far by ``all_gather`` of them: every process's, under DDP.

        Args:
            all_gather: Takes this process's rows and returns every process's, concatenated.
        """
        if self._predictions:
            self._predictions = [all_gather(torch.cat(self._predictions))]
            self._targets = [all_gather(torch.cat(self._targets))]

    def compute(self) -> dict[str, float]:
        """The metrics of every batch seen so far, read from the device in one go.

        Returns:
            Classification: ``val_f1``, ``val_precision``, ``val_recall`` (macro averages over
            the classes for multiclass, of the positive class for binary).
            Regression: ``val_rmse`` and ``val_r2`` (averaged over outputs; R² needs two samples).
            Nothing when no batch was seen.
        """
        if not self._predictions:
            return {}
        predictions, targets = torch.cat(self._predictions), torch.cat(self._targets)
        if self._classes:
            values, confusion = self._classification(predictions, targets)
        else:
            values, confusion = self._regression(predictions, targets), None
        names = list(values)
        stacked = torch.stack([values[name].double().reshape(()) for name in names])
        if confusion is not None:
            # One copy to the host for the metrics and the confusion matrix together.
            host = torch.cat([stacked, confusion.reshape(-1).double()]).tolist()
            stacked_values, counts = host[: len(names)], host[len(names) :]
            side = confusion.shape[0]
            self.confusion_matrix = [[int(c) for c in counts[row * side : (row + 1) * side]] for row in range(side)]
        else:
            stacked_values = stacked.tolist()
        return dict(zip(names, stacked_values))

    def per_class(self) -> dict[str, list[float]] | None:
        """Precision, recall, F1 and support of each class (binary: classes 0 and 1), or None for regression.

        Returns:
            ``{"precision": [...], "recall": [...], "f1": [...], "support": [...]}``, one entry per
            class in label order; a class never predicted has precision 0 (and never seen, recall 0).

        Example:
            >>> from trainwell.loop.tasks import infer_task
            >>> outputs, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1])
            >>> metrics = ValidationMetrics(infer_task("auto", None, outputs, targets))
            >>> metrics.update(outputs, targets)
            >>> metrics.per_class()
            {'precision': [0.5, 1.0], 'recall': [1.0, 0.5], 'f1': [0.6666666865348816, 0.6666666865348816], 'support': [1, 2]}
        """
        if not self._classes or not self._predictions:
            return None
        from torchmetrics.functional import classification as tm

        predictions, targets = torch.cat(self._predictions), torch.cat(self._targets)
        common = {"num_classes": self._classes, "average": "none", "ignore_index": IGNORE_INDEX, "validate_args": False}
        counted = targets[targets != IGNORE_INDEX]
        values = torch.stack(
            [
                tm.multiclass_precision(predictions, targets, **common),
                tm.multiclass_recall(predictions, targets, **common),
                tm.multiclass_f1_score(predictions, targets, **common),
                torch.bincount(counted, minlength=self._classes)[: self._classes].to(torch.float32),
            ]
        ).tolist()
        return {"precision": values[0], "recall": values[1], "f1": values[2], "support": [int(n) for n in values[3]]}

    def _classification(self, predictions: torch.Tensor, targets: torch.Tensor) -> tuple[dict[str, torch.Tensor], Any]:
        from torchmetrics.functional import classification as tm

        # Arguments were checked when the first batch was probed, and the loss has seen every
        # label; torchmetrics' own checks would add host synchronisations.
        if self.task.kind == "binary":
            common: dict[str, Any] = {"validate_args": False}
            values = {
                "val_f1": tm.binary_f1_score(predictions, targets, **common),
                "val_precision": tm.binary_precision(predictions, targets, **common),
                "val_recall": tm.binary_recall(predictions, targets, **common),
            }
            return values, tm.binary_confusion_matrix(predictions, targets, **common)
        common = {"num_classes": self._classes, "ignore_index": IGNORE_INDEX, "validate_args": False}
        values = {
            "val_f1": tm.multiclass_f1_score(predictions, targets, average="macro", **common),
            "val_precision": tm.multiclass_precision(predictions, targets, average="macro", **common),
            "val_recall": tm.multiclass_recall(predictions, targets, average="macro", **common),
        }
        confusion = (
            tm.multiclass_confusion_matrix(predictions, targets, **common)
            if self._classes <= CONFUSION_MAX_CLASSES
            else None
        )
        return values, confusion

    def _regression(self, predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        from torchmetrics.functional import mean_squared_error, r2_score

        outputs = predictions.shape[1]
        flat = (predictions.squeeze(1), targets.squeeze(1)) if outputs == 1 else (predictions, targets)
        values = {"val_rmse": mean_squared_error(*flat, squared=False, num_outputs=outputs).mean()}
        if len(predictions) >= 2:
            values["val_r2"] = r2_score(*flat)
        return values
