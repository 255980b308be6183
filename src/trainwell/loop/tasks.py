"""Tasks: what the targets mean, which loss fits them, and where the class logits are.

:func:`infer_task` looks once at the first batch (the model's outputs and the targets) and the
loss, decides between classification and regression, and checks that the targets fit the
outputs, so that a label 10 against 10 classes, or regression targets of shape ``(N,)`` against
outputs of shape ``(N, 1)``, are caught before training instead of failing deep inside a loss
or, worse, silently broadcasting. Class logits may come in torch's layout ``(N, C, ...)`` or with
the class dimension last, ``(N, T, C)``, as sequence models return them; the targets' shape tells
which (and shapes that fit both are refused rather than guessed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwell.data.targets import looks_like_labels
from trainwell.exceptions import ConfigError, DataError

logger = logging.getLogger("trainwell")

# The label value CrossEntropyLoss and NLLLoss skip by default (used to pad sequence labels).
IGNORE_INDEX = -100

_CLASSIFICATION_LOSSES = (
    nn.CrossEntropyLoss,
    nn.NLLLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.MultiLabelSoftMarginLoss,
)
# The losses that take class logits in dimension 1 and class-index targets.
_CLASS_INDEX_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
_REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.GaussianNLLLoss, nn.PoissonNLLLoss)


@dataclass
class Task:
    """A task decided from the first batch.

    Attributes:
        name: ``"classification"`` or ``"regression"``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``.
        kind: ``"multiclass"`` (one logit per class), ``"binary"`` (one logit per target) or
            ``"regression"``.
        reshape_targets: Targets are reshaped to the outputs' shape (same number of elements).
        class_dim: Where the class logits are (multiclass): ``1``, torch's ``(N, C, ...)``, or
            ``-1``, the class dimension last, ``(N, ..., C)`` (sequence models' ``(N, T, C)``).
        classes: How many classes (multiclass; 2 for binary); None for regression.
        values: How many values each sample's outputs hold (regression: the columns that RMSE
            and R² average over); None for classification.
    """

    name: str
    loss_fn: Callable[..., torch.Tensor]
    kind: str
    reshape_targets: bool = False
    class_dim: int = 1
    classes: int | None = None
    values: int | None = None

    def prepare_targets(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Targets in the dtype and shape the loss expects (no copy when nothing changes)."""
        # Attribute checks first: they cost far less than even a no-op tensor call per step.
        if self.kind == "multiclass":
            return targets if targets.dtype == torch.int64 else targets.long()
        if self.reshape_targets:
            targets = targets.reshape(outputs.shape)
        return targets if targets.is_floating_point() else targets.float()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of one batch; class-last logits reach torch's class-index losses flattened to ``(N * T, C)``."""
        targets = self.prepare_targets(outputs, targets)
        if self.class_dim == -1 and outputs.dim() > 2 and isinstance(self.loss_fn, _CLASS_INDEX_LOSSES):
            # Torch's losses want classes in dimension 1; every position is one sample of them (the
            # mean over labels is the same, ignore_index still applies), and the last-dimension
            # softmax of a contiguous (N*T, C) view is the fastest there is.
            return self.loss_fn(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))
        return self.loss_fn(outputs, targets)

    # ------------------------------------------------ every batch's targets (used by loop/batch_check.py)

    def target_shape_problem(self, outputs: torch.Tensor, targets: torch.Tensor) -> str | None:
        """What is wrong with a batch's targets for these outputs, from shapes and dtypes alone (no sync), or None."""
        if not isinstance(targets, torch.Tensor) or not isinstance(outputs, torch.Tensor):
            return None  # a custom step's business
        if self.kind == "multiclass":
            if targets.is_floating_point():
                return f"targets are {targets.dtype}: class-index targets must be integers"
            dims = list(outputs.shape)
            del dims[self.class_dim]
            expected = torch.Size(dims)
        elif self.reshape_targets:
            if targets.numel() == outputs.numel() and targets.shape[:1] == outputs.shape[:1]:
                return None
            expected = outputs.shape
        else:
            expected = outputs.shape
        if targets.shape != expected:
            return (
                f"targets of shape {tuple(targets.shape)} do not fit outputs of shape {tuple(outputs.shape)} "
                f"(expected targets of shape {tuple(expected)}, as in the first batch)"
            )
        return None

    def target_range(self) -> tuple[float, float] | None:
        """The values a target may take, ``(low, high)`` inclusive, or None when any value is acceptable (regression)."""
        if self.kind == "multiclass" and self.classes is not None:
            return (0, self.classes - 1)
        if self.kind == "binary":
            return (0, 1)
        return None


def task_of_loss(loss_fn: Any) -> str | None:
    """``classification``/``regression`` for torch's well-known losses, None for anything else."""
    if isinstance(loss_fn, _CLASSIFICATION_LOSSES):
        return "classification"
    if isinstance(loss_fn, _REGRESSION_LOSSES):
        return "regression"
    return None


def infer_task(
    requested: str,
    loss_fn: Callable[..., torch.Tensor] | None,
    outputs: Any,
    targets: Any,
    source: str = "train_loader",
) -> Task:
    """Decide the task from the config, the loss and one batch, and check the targets fit.

    Args:
        requested: ``"auto"``, ``"classification"`` or ``"regression"``.
        loss_fn: The user's loss, or None for the task's default.
        outputs: The model's outputs on the first batch.
        targets: The first batch's targets.
        source: Which loader the batch came from, for messages.

    Raises:
        ConfigError: the requested task contradicts the loss.
        DataError: the outputs are not a tensor, or the targets do not fit them.
    """
    if not isinstance(outputs, torch.Tensor) or not outputs.is_floating_point():
        raise DataError(
            f"the model returned {_describe(outputs)} on the first batch of {source}: expected a "
            "floating-point tensor of outputs (logits for classification). Return a tensor from "
            "forward(), or override Trainer.train_step to compute the loss yourself."
        )
    if not isinstance(targets, torch.Tensor):
        raise DataError(f"targets in {source} are {_describe(targets)}: expected a tensor.")
    from_loss = task_of_loss(loss_fn)
    if requested != "auto" and from_loss is not None and requested != from_loss:
        raise ConfigError(
            f"task={requested!r} contradicts loss_fn={type(loss_fn).__name__}, a {from_loss} loss: "
            f"set task={from_loss!r} or pass a {requested} loss."
        )
    name = requested if requested != "auto" else from_loss
    if name is None:
        name = "regression" if targets.is_floating_point() else "classification"
    if name == "classification":
        return _classification(loss_fn, outputs, targets, source)
    return _regression(loss_fn, outputs, targets, source)


def _classification(loss_fn: Any, outputs: torch.Tensor, targets: torch.Tensor, source: str) -> Task:
    if outputs.dim() == targets.dim() + 1:
        class_dim = _class_dim(outputs, targets, source)
        if class_dim is not None:
            classes = outputs.shape[class_dim]
            _check_class_labels(targets, classes, source)
            return Task("classification", loss_fn or nn.CrossEntropyLoss(), "multiclass", False, class_dim, classes)
    if outputs.numel() == targets.numel() and outputs.shape[0] == targets.shape[0]:
        labels = torch.unique(targets)
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise DataError(
                f"targets in {source} hold the labels {_labels(labels)}, but the model has one output per "
                f"target (outputs {tuple(outputs.shape)}), which only fits binary 0/1 labels. Give the "
                f"model {int(labels.max()) + 1} outputs for class-index labels, or set task='regression'."
            )
        reshape = outputs.shape != targets.shape
        if reshape:
            logger.info(
                "Reshaping binary targets %s to the outputs' shape %s.", tuple(targets.shape), tuple(outputs.shape)
            )
        return Task("classification", loss_fn or nn.BCEWithLogitsLoss(), "binary", reshape, classes=2)
    raise DataError(
        f"targets of shape {tuple(targets.shape)} do not fit outputs of shape {tuple(outputs.shape)} in "
        f"{source}: classification expects outputs (N, classes) with integer targets (N,), or one logit "
        "per 0/1 target."
    )


def _class_dim(outputs: torch.Tensor, targets: torch.Tensor, source: str) -> int | None:
    """Where the class logits are, told by which dimension the targets lack: 1, -1, or None (one logit per target).

    Raises:
        DataError: the targets fit neither layout, or both (the class count equals every other size).
    """
    shape = tuple(outputs.shape)
    first = shape[:1] + shape[2:] == tuple(targets.shape) and shape[1] >= 2
    # With 2-D outputs, the last dimension is dimension 1: one layout, torch's.
    last = outputs.dim() > 2 and shape[:-1] == tuple(targets.shape) and shape[-1] >= 2
    if first and last:
        raise DataError(
            f"outputs of shape {shape} against targets of shape {tuple(targets.shape)} in {source} fit both "
            f"class layouts: {shape[1]} classes in dimension 1 (torch's (N, C, ...)) or in the last dimension "
            "((N, ..., C), as sequence models return them), because the class count equals every other size. "
            "Give the model one more output (a class no label uses), or batches of another length, so that "
            "the shapes tell the layout."
        )
    if first or last:
        return 1 if first else -1
    if shape[1] == 1 or shape[-1] == 1:
        return None  # one logit per target: binary, if the counts agree
    layouts = f"{shape[:1] + shape[2:]} for classes in dimension 1"
    if outputs.dim() > 2:
        layouts += f", or {shape[:-1]} for classes last"
    raise DataError(
        f"targets of shape {tuple(targets.shape)} do not fit outputs of shape {shape} in {source}: class-index "
        f"targets need the outputs' shape without the class dimension, {layouts}."
    )


def _check_class_labels(targets: torch.Tensor, classes: int, source: str) -> None:
    if targets.is_floating_point():
        raise DataError(
            f"targets in {source} are {targets.dtype} against outputs with {classes} classes: "
            "class-index targets must be integers. Convert them with targets.long(), or set "
            "task='regression' if they are real values."
        )
    counted = targets[targets != IGNORE_INDEX]
    if counted.numel() == 0:
        return
    low, high = int(counted.min()), int(counted.max())
    if low < 0 or high >= classes:
        bad = high if high >= classes else low
        raise DataError(
            f"targets in {source} contain the label {bad}, but the model outputs {classes} classes "
            f"(labels 0 to {classes - 1}): give the model's last layer at least {max(high + 1, classes)} "
            "outputs, or fix the labels."
        )


def _regression(loss_fn: Any, outputs: torch.Tensor, targets: torch.Tensor, source: str) -> Task:
    values = outputs[0].numel() if outputs.dim() > 0 and len(outputs) else 1
    if outputs.shape == targets.shape:
        return Task("regression", loss_fn or nn.MSELoss(), "regression", values=values)
    if outputs.numel() == targets.numel() and outputs.shape[0] == targets.shape[0]:
        logger.info(
            "Reshaping regression targets %s to the outputs' shape %s (never broadcast).",
            tuple(targets.shape),
            tuple(outputs.shape),
        )
        return Task("regression", loss_fn or nn.MSELoss(), "regression", reshape_targets=True, values=values)
    classes = outputs.shape[1] if outputs.dim() == targets.dim() + 1 and outputs.dim() >= 2 else None
    if classes is not None and classes >= 2 and looks_like_labels(targets, classes):
        raise DataError(
            f"targets in {source} are {targets.dtype} whole numbers ({_labels(torch.unique(targets))}) against outputs "
            f"with {classes} classes {tuple(outputs.shape)}: they look like class labels stored as floats, which "
            "reads as regression. Cast them to integers (targets.long(), or y.astype('int64') before building the "
            "loader) to train a classifier; if they are real values, give the model 1 output per target."
        )
    raise DataError(
        f"targets of shape {tuple(targets.shape)} do not fit outputs of shape {tuple(outputs.shape)} in "
        f"{source}: regression needs one output per target value. Change the model's last layer to "
        f"{tuple(targets.shape[1:]) or 1} outputs, or reshape the targets."
    )


def _labels(labels: torch.Tensor) -> str:
    values = labels.tolist()
    shown = ", ".join(f"{v:g}" for v in values[:6])
    return shown + (", ..." if len(values) > 6 else "")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
