"""Validation metrics from sums kept on the device: accuracy, macro F1/precision/recall, top-K,
perplexity and the confusion matrix for classification; MAE, MSE, RMSE and R² for regression.

:class:`ValidationMetrics` adds each validation batch into a few counters on the device (a
scatter-add never waits for the device, so the pass gains no host synchronisation) and turns
them into metrics once, at the end of the pass, from one copy to the host. The counters hold
what the chosen metrics need and no more (:mod:`trainwell.loop.metric_choice`): per-class counts
take memory in proportion to the classes, and the confusion matrix (classes²) is kept only up to
100 classes. Under torchrun every process's counters are summed before the metrics are computed,
so they cover the whole validation set.

The scores follow torchmetrics' definitions (macro averages over the classes that occur among
the labels or the predictions, 0 where a ratio has nothing to divide; R² of near-constant targets
as torchmetrics has it), which the tests check. torchmetrics itself is not used here: its
classification metrics count through a classes² confusion matrix on every batch, the very cost
this module avoids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch.nn import functional

from trainwell.loop.metric_choice import choose_metrics, top_k
from trainwell.loop.tasks import IGNORE_INDEX

if TYPE_CHECKING:
    from trainwell.loop.tasks import Task

_PER_CLASS = ("support", "predicted", "true_positive")  # the counters per class
_PER_CLASS_METRICS = ("f1", "precision", "recall")  # the metrics computed from them


class ValidationMetrics:
    """Counts one validation pass on the device and computes the chosen metrics at its end.

    Args:
        task: The task the trainer decided from the first batch.
        metrics: The metric names to compute (``TrainConfig.metrics``); None: the task's default set.
        device: Where to count; None: the device of the first batch's outputs.

    Attributes:
        names: The metrics computed (:func:`~trainwell.loop.metric_choice.choose_metrics`).
        confusion_matrix: After :meth:`compute`, when ``"confusion_matrix"`` is among the names:
            ``matrix[true][predicted]`` counts as nested lists of ints; otherwise None.

    Raises:
        ConfigError: a chosen metric does not fit the task.

    Example:
        >>> from trainwell.loop.tasks import infer_task
        >>> outputs, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1])
        >>> task = infer_task("auto", None, outputs, targets)
        >>> metrics = ValidationMetrics(task)
        >>> metrics.update(outputs, targets)
        >>> round(metrics.compute()["val_recall"], 2), metrics.confusion_matrix
        (0.75, [[1, 0], [1, 1]])
    """

    def __init__(self, task: Task, metrics: Sequence[str] | None = None, device: torch.device | None = None) -> None:
        self.task = task
        self.names = choose_metrics(metrics, task)
        self.confusion_matrix: list[list[int]] | None = None
        self._sizes = _counter_sizes(self.names, task)
        self._counts: dict[str, torch.Tensor] | None = None
        self._host: dict[str, torch.Tensor] | None = None
        if device is not None:
            self._allocate(torch.device(device))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch's counts (on the device of ``outputs``; no host synchronisation)."""
        targets = self.task.prepare_targets(outputs, targets).detach()
        outputs = outputs.detach()
        if self._counts is None:
            self._allocate(outputs.device)
        self._counts["updates"] += 1
        if self.task.name == "regression":
            self._count_regression(outputs, targets)
        else:
            self._count_classification(outputs, targets)

    def sums(self) -> torch.Tensor:
        """Every counter, flat, on the device: what is summed over the processes under torchrun."""
        if self._counts is None:
            self._allocate(torch.device("cpu"))
        return torch.cat([self._counts[name].reshape(-1) for name in self._sizes])

    def compute(self, sums: torch.Tensor | None = None) -> dict[str, float]:
        """The metrics of every batch counted, read from the device in one copy.

        Args:
            sums: The counters to compute from, as :meth:`sums` lays them out (under torchrun,
                every process's summed); None: this object's own.

        Returns:
            ``{"val_<name>": value}`` for each chosen metric (but the confusion matrix, which is
            set as :attr:`confusion_matrix`); nothing when no batch was counted.
        """
        host = (self.sums() if sums is None else sums).to("cpu", torch.float64)
        counts, start = {}, 0
        for name, size in self._sizes.items():
            counts[name] = host[start : start + size]
            start += size
        self._host = counts
        if counts["updates"].item() == 0:
            return {}
        if "confusion" in counts:
            side = self.task.classes
            self.confusion_matrix = counts["confusion"].reshape(side, side).long().tolist()
        scores = _regression_scores(counts) if self.task.name == "regression" else self._classification_scores(counts)
        return {f"val_{name}": scores[name] for name in self.names if name in scores}

    def per_class(self) -> dict[str, list[float]] | None:
        """Precision, recall, F1 and support of each class (binary: classes 0 and 1), of the counts :meth:`compute` read.

        Returns:
            ``{"precision": [...], "recall": [...], "f1": [...], "support": [...]}``, one entry per
            class in label order (a class never predicted has precision 0; never seen, recall 0),
            or None: regression, or none of f1, precision and recall chosen (the per-class
            counts are kept for those).

        Example:
            >>> from trainwell.loop.tasks import infer_task
            >>> outputs, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1])
            >>> metrics = ValidationMetrics(infer_task("auto", None, outputs, targets))
            >>> metrics.update(outputs, targets)
            >>> _ = metrics.compute()
            >>> metrics.per_class()
            {'precision': [0.5, 1.0], 'recall': [1.0, 0.5], 'f1': [0.6666666666666666, 0.6666666666666666], 'support': [1, 2]}
        """
        if "support" not in self._sizes:
            return None
        if self._host is None:
            self.compute()
        counts = self._host
        precision, recall, f1 = _class_scores(counts)
        return {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": [int(n) for n in counts["support"].tolist()],
        }

    # ------------------------------------------------------------------ counting

    def _allocate(self, device: torch.device) -> None:
        # float64 counts are exact to 2^53; MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self._counts = {name: torch.zeros(size, dtype=dtype, device=device) for name, size in self._sizes.items()}

    def _count_classification(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        task, counts = self.task, self._counts
        if task.kind == "binary":
            predicted = (outputs > 0).reshape(-1).long()
            labels = (targets > 0.5).reshape(-1).long()
            counted = torch.ones_like(labels, dtype=torch.bool)
        else:
            predicted = outputs.argmax(dim=task.class_dim).reshape(-1)
            labels = targets.reshape(-1)
            counted = labels != IGNORE_INDEX
            labels = torch.where(counted, labels, 0)  # an index for every position; ignored ones weigh 0
        weight = counted.to(counts["labels"].dtype)
        hit = (predicted == labels) & counted
        counts["labels"] += weight.sum()
        if "correct" in counts:
            counts["correct"] += hit.sum()
        if "support" in counts:
            counts["support"].index_add_(0, labels, weight)
            counts["predicted"].index_add_(0, predicted, weight)
            counts["true_positive"].index_add_(0, labels, hit.to(weight.dtype))
        if "confusion" in counts:
            counts["confusion"].index_add_(0, labels * task.classes + predicted, weight)
        for name in self.names:
            k = top_k(name)
            if k is not None:
                top = outputs.topk(k, dim=task.class_dim).indices
                inside = (top == targets.unsqueeze(task.class_dim)).any(dim=task.class_dim)
                counts[name] += (inside.reshape(-1) & counted).sum()
        if "nll" in counts:
            logits = outputs.reshape(-1, task.classes) if task.class_dim == -1 else outputs
            flat = targets.reshape(-1) if task.class_dim == -1 else targets
            counts["nll"] += functional.cross_entropy(logits.float(), flat, ignore_index=IGNORE_INDEX, reduction="sum")

    def _count_regression(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        counts = self._counts
        dtype = counts["rows"].dtype
        # In float64: R² subtracts two large sums of squares, which float32 would not survive.
        predictions = outputs.reshape(len(outputs), -1).to(dtype)
        targets = targets.reshape(len(targets), -1).to(dtype)
        error = predictions - targets
        counts["rows"] += len(error)
        counts["values"] += error.numel()
        if "abs_error" in counts:
            counts["abs_error"] += error.abs().sum()
        if "squared_error" in counts:
            counts["squared_error"] += error.square().sum(dim=0)
        if "target_sum" in counts:
            counts["target_sum"] += targets.sum(dim=0)
            counts["target_squared_sum"] += targets.square().sum(dim=0)

    # ------------------------------------------------------------------ scores

    def _classification_scores(self, counts: dict[str, torch.Tensor]) -> dict[str, float]:
        labels = max(counts["labels"].item(), 1.0)
        scores = {name: counts[name].item() / labels for name in self.names if top_k(name) is not None}
        if "correct" in counts:
            scores["accuracy"] = counts["correct"].item() / labels
        if "nll" in counts:
            scores["perplexity"] = float(torch.exp(counts["nll"] / labels))
        if "support" in counts:
            per_class = dict(zip(("precision", "recall", "f1"), _class_scores(counts)))
            if self.task.kind == "binary":  # the positive class's scores
                scores.update({name: float(value[1]) for name, value in per_class.items()})
            else:
                # Macro averages over the classes that occur among the labels or the predictions, as torchmetrics has them.
                occurs = (counts["support"] + counts["predicted"]) > 0
                shown = max(int(occurs.sum()), 1)
                scores.update({name: float(value[occurs].sum() / shown) for name, value in per_class.items()})
        return scores


def _class_scores(counts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each class's precision, recall and F1 from its counts (0 where there is nothing to divide)."""
    true_positive, predicted, support = counts["true_positive"], counts["predicted"], counts["support"]
    return (
        _ratio(true_positive, predicted),
        _ratio(true_positive, support),
        _ratio(2 * true_positive, predicted + support),
    )


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), 0.0)


def _regression_scores(counts: dict[str, torch.Tensor]) -> dict[str, float]:
    rows, values = counts["rows"].item(), max(counts["values"].item(), 1.0)
    scores = {}
    if "abs_error" in counts:
        scores["mae"] = counts["abs_error"].item() / values
    if "squared_error" in counts:
        squared = counts["squared_error"]
        scores["mse"] = squared.sum().item() / values
        scores["rmse"] = (squared / max(rows, 1.0)).sqrt().mean().item()
    if "target_sum" in counts and rows >= 2:
        scores["r2"] = _r2(counts, rows)
    return scores


def _r2(counts: dict[str, torch.Tensor], rows: float) -> float:
    """R² averaged over the outputs, with torchmetrics' rule for near-constant targets or perfect fits."""
    residual = counts["squared_error"]
    total = counts["target_squared_sum"] - counts["target_sum"] ** 2 / rows
    varies, errs = total.abs() > 1e-4, residual.abs() > 1e-4
    score = torch.ones_like(residual)
    score = torch.where(varies & errs, 1 - residual / torch.where(varies, total, 1.0), score)
    score = torch.where(errs & ~varies, 0.0, score)
    return score.mean().item()


def _counter_sizes(names: Sequence[str], task: Task) -> dict[str, int]:
    """The counters the metrics ``names`` need, by name, with their sizes (in the order :meth:`sums` lays them)."""
    sizes = {"updates": 1}
    if task.name == "regression":
        sizes.update(rows=1, values=1)
        columns = task.values or 1
        if "mae" in names:
            sizes["abs_error"] = 1
        if {"mse", "rmse", "r2"} & set(names):
            sizes["squared_error"] = columns
        if "r2" in names:
            sizes.update(target_sum=columns, target_squared_sum=columns)
        return sizes
    classes = task.classes or 2
    sizes["labels"] = 1
    if "accuracy" in names:
        sizes["correct"] = 1
    if set(_PER_CLASS_METRICS) & set(names):
        sizes.update({name: classes for name in _PER_CLASS})
    if "confusion_matrix" in names:
        sizes["confusion"] = classes * classes
    if "perplexity" in names:
        sizes["nll"] = 1
    sizes.update({name: 1 for name in names if top_k(name) is not None})
    return sizes
