"""Evaluate a trained model on held-out data: the loss and the task's metrics, with per-class detail.

:func:`evaluate` runs a model over a loader once, in eval mode and without gradients, and
reports what the trainer reports after each epoch (the loss and the metrics of
:mod:`trainwell.loop.metrics`, the same pass, :mod:`trainwell.loop.validation`) plus, for
classification, each class's precision, recall, F1 and support and the confusion matrix. The task and the loss are decided from the first
batch exactly as in training (:func:`trainwell.loop.tasks.infer_task`), so the numbers are comparable
with the ``val_*`` columns of a run's metrics.jsonl.

(The module is ``evaluation`` rather than ``evaluate``: a submodule named like the function
``trainwell.evaluate`` would replace that function on the package once imported.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwell.exceptions import DataError, ModelError


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        samples: How many samples were evaluated.
        metrics: ``loss`` and each chosen metric (``evaluate``'s ``metrics``). By default
            ``accuracy``, ``f1``, ``precision``, ``recall`` (macro averages over the classes; of
            the positive class for a single-logit binary model), ``accuracy`` alone above 100
            classes, or ``mae``, ``rmse``, ``r2`` for regression.
        class_names: The name of each class, index = label (with per-class scores).
        per_class: Per class: ``{"class", "precision", "recall", "f1", "support"}`` (classification,
            with f1, precision or recall among the metrics: by default up to 100 classes).
        confusion_matrix: ``matrix[true][predicted]`` counts (with ``"confusion_matrix"`` among
            the metrics: by default for classification with at most 100 classes).
        source: What was evaluated (a split, a file), for the record.
    """

    task: str
    samples: int
    metrics: dict[str, float]
    class_names: list[str] = field(default_factory=list)
    per_class: list[dict[str, Any]] | None = None
    confusion_matrix: list[list[int]] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (non-finite numbers as None)."""
        return {
            **self.source,
            "task": self.task,
            "samples": self.samples,
            "metrics": {name: _finite_or_none(value) for name, value in self.metrics.items()},
            "class_names": list(self.class_names),
            "per_class": self.per_class,
            "confusion_matrix": self.confusion_matrix,
        }

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically; return the path."""
        from trainwell.files.atomic import write_text

        path = Path(path)
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    def table(self) -> str:
        """The metrics, the per-class scores and the confusion matrix as aligned text."""
        lines = [f"{name:<10} {_number(value)}" for name, value in self.metrics.items()]
        if self.per_class:
            width = max(5, *(len(row["class"]) for row in self.per_class))
            lines += ["", f"{'class':<{width}}  precision     recall         f1    support"]
            for row in self.per_class:
                lines.append(
                    f"{row['class']:<{width}}  {row['precision']:>9.4f}  {row['recall']:>9.4f}  {row['f1']:>9.4f}  {row['support']:>9d}"
                )
        if self.confusion_matrix:
            labels = [str(name) for name in self.class_names] or [str(i) for i in range(len(self.confusion_matrix))]
            cell = max(
                4, *(len(label) for label in labels), *(len(str(n)) for row in self.confusion_matrix for n in row)
            )
            lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
            lines.append(" " * (cell + 1) + " ".join(f"{label:>{cell}}" for label in labels))
            for label, row in zip(labels, self.confusion_matrix):
                lines.append(f"{label:>{cell}} " + " ".join(f"{count:>{cell}d}" for count in row))
        return "\n".join(lines)


def evaluate(
    model: Any,
    loader: Iterable[Any],
    *,
    task: str = "auto",
    loss_fn: Callable[..., Any] | None = None,
    class_names: Sequence[str] | None = None,
    device: Any = None,
    metrics: Sequence[str] | None = None,
    target_scaling: Any = None,
) -> Evaluation:
    """Measure ``model`` on every batch of ``loader``: the loss and the task's metrics.

    The model runs in eval mode under ``torch.no_grad()`` (its mode is restored afterwards);
    losses are weighted by batch size, so the result does not depend on how the data is batched.

    Args:
        model: A trained ``nn.Module`` returning logits (classification) or values (regression).
        loader: Batches of ``(inputs, targets)`` (or dicts with ``inputs`` and ``targets``): a
            DataLoader, a :class:`~trainwell.data.TensorLoader`, a list of pairs.
        task: ``"auto"`` (integer targets: classification; float targets: regression, or as
            ``loss_fn`` implies), ``"classification"`` or ``"regression"``.
        loss_fn: The loss to report; None uses the task's default (cross-entropy, BCE with
            logits for one output, MSE), as training does.
        class_names: Names for the classes in the per-class table (default ``"0"``, ``"1"``, ...).
        device: Where to run; None uses the device of the model's parameters.
        metrics: The metrics to compute, named as for :class:`~trainwell.TrainConfig`'s
            ``metrics`` (e.g. ``["accuracy", "top5"]``); None: the task's default set, as in training.
        target_scaling: For a model trained on standardised regression targets, their
            :class:`~trainwell.data.targets.TargetScaling` (None: the loader's
            ``target_scaling``, if any): MAE, RMSE and R² are then in the targets' own units,
            the loss on the standard scale.

    Returns:
        An :class:`Evaluation` (``.metrics``, ``.per_class``, ``.confusion_matrix``, ``.table()``).

    Raises:
        ModelError: ``model`` is not an ``nn.Module``, or its tensors are on the meta device.
        DataError: the loader is empty, a batch is not ``(inputs, targets)``, the model fails on
            the inputs, or the targets do not fit its outputs (a label beyond its classes).
        ConfigError: an unknown metric, or one that does not fit the task.

    Example:
        >>> import torch, trainwell
        >>> from trainwell.data import TensorLoader
        >>> model = torch.nn.Linear(2, 3)
        >>> inputs, targets = torch.randn(50, 2), torch.randint(0, 3, (50,))
        >>> result = trainwell.evaluate(model, TensorLoader(inputs, targets, shuffle=False))
        >>> sorted(result.metrics), result.samples, len(result.confusion_matrix)
        (['accuracy', 'f1', 'loss', 'precision', 'recall'], 50, 3)
    """
    import torch
    from torch import nn

    from trainwell.config import check_metric_names
    from trainwell.data import batches
    from trainwell.display import progress
    from trainwell.loop.batch_check import BatchCheck
    from trainwell.loop.preflight import refuse_meta
    from trainwell.loop.tasks import infer_task
    from trainwell.loop.validation import evaluation_pass

    if not isinstance(model, nn.Module):
        raise ModelError(f"model is a {type(model).__name__}: expected a torch.nn.Module (an instance, not the class).")
    metrics = check_metric_names(metrics)
    refuse_meta(model)
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    decided = None
    device = torch.device(device)
    # Every batch's targets against the task the first one decided (read at once on the CPU, at the end elsewhere).
    checked = BatchCheck(lambda: decided, on_device=device.type != "cpu")
    checked.at("the loader", counting=True)

    def step(batch: tuple[Any, Any]) -> dict[str, Any]:
        nonlocal decided
        inputs, targets = batch
        try:
            outputs = batches.forward(model, inputs)
        except (RuntimeError, TypeError, ValueError) as error:
            raise DataError(
                f"the model failed on a batch of the loader (inputs: {batches.describe(inputs)}): {error}. "
                "Check that the inputs are prepared as in training (trainwell.load_model(run_dir).prepare does it)."
            ) from error
        if decided is None:
            decided = infer_task(task, loss_fn, outputs, targets, source="the loader")
        targets = checked(outputs, targets)
        return {"loss": decided.loss(outputs, targets), "outputs": outputs, "targets": targets}

    scaling = target_scaling if target_scaling is not None else getattr(loader, "target_scaling", None)
    # A bar only for a pass that lasts (delay): a large input shows progress, a small one nothing.
    total = len(loader) if hasattr(loader, "__len__") else None
    shown = progress(loader, total=total, desc="evaluating", unit="batch", leave=False, delay=1.0)
    try:
        measured = evaluation_pass(
            model, shown, step, task=lambda: decided, device=device, source="loader", metrics=metrics, target_scaling=scaling
        )
    finally:
        shown.close()
    checked.flush()
    if decided is None:
        raise DataError("the loader yielded no batches: nothing to evaluate. Pass data with at least one sample.")
    metrics = {name.removeprefix("val_"): value for name, value in measured.metrics.items()}
    result = Evaluation(task=decided.name, samples=measured.samples, metrics=metrics)
    details = measured.details
    if decided.name == "classification":
        names_given = list(class_names) if class_names is not None else []
        count = decided.classes
        result.class_names = names_given if len(names_given) == count else [str(i) for i in range(count)]
        result.confusion_matrix = details.confusion_matrix
    scores = details.per_class()
    if scores is not None:
        result.per_class = [
            {
                "class": result.class_names[i],
                "precision": scores["precision"][i],
                "recall": scores["recall"][i],
                "f1": scores["f1"][i],
                "support": scores["support"][i],
            }
            for i in range(count)
        ]
    return result


def _finite_or_none(value: float) -> float | None:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.1f}" if abs(value) >= 10_000 else f"{value:.4f}"
