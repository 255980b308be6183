"""Which validation metrics a run computes: the ``metrics=`` a user chose, checked against the task, or the task's default set.

The names themselves (and "did you mean" for unknown ones) are checked when the config is built
(:data:`trainwell.config.CLASSIFICATION_METRICS`); what fits the model (a top-5 needs more than
five classes, R² needs regression) is known only once the first batch decided the task, and is
checked here, before training starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from trainwell.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, TOP_K_PATTERN
from trainwell.exceptions import ConfigError

if TYPE_CHECKING:
    from trainwell.loop.tasks import Task

# Up to this many classes the confusion matrix can be read, and macro averages over the classes
# say something; above it the default set is accuracy alone, and a confusion matrix (classes² counts)
# is not kept at all.
READABLE_CLASSES = 100


def default_metrics(task: Task) -> list[str]:
    """The metrics a task computes when ``metrics`` is None.

    Example:
        >>> import torch
        >>> from trainwell.loop.tasks import infer_task
        >>> default_metrics(infer_task("auto", None, torch.randn(4, 1000), torch.tensor([0, 1, 2, 3])))
        ['accuracy']
    """
    if task.name == "regression":
        return ["mae", "rmse", "r2"]
    if (task.classes or 0) <= READABLE_CLASSES:
        return ["accuracy", "f1", "precision", "recall", "confusion_matrix"]
    return ["accuracy"]


def choose_metrics(requested: Sequence[str] | None, task: Task) -> list[str]:
    """The metrics to compute for ``task``: ``requested`` (the config's ``metrics``) or the task's default set.

    Args:
        requested: Known metric names (as :class:`~trainwell.TrainConfig` checked them), or None.
        task: The task the first batch decided.

    Returns:
        The names, in the order given.

    Raises:
        ConfigError: a name does not fit the task or the model (every such name, in one message).

    Example:
        >>> import torch
        >>> from trainwell.loop.tasks import infer_task
        >>> task = infer_task("auto", None, torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
        >>> choose_metrics(["accuracy", "top5"], task)
        ['accuracy', 'top5']
    """
    if requested is None:
        return default_metrics(task)
    problems = [problem for name in requested if (problem := _misfit(name, task)) is not None]
    if problems:
        raise ConfigError(f"metrics={list(requested)!r} do not fit this model: " + " ".join(problems))
    return list(requested)


def top_k(name: str) -> int | None:
    """K of a ``"topK"`` metric name, or None for another name."""
    match = re.fullmatch(TOP_K_PATTERN, name)
    return int(match.group(1)) if match is not None else None


def _misfit(name: str, task: Task) -> str | None:
    classification = [*CLASSIFICATION_METRICS, "topK"]
    if task.name == "classification" and name in REGRESSION_METRICS:
        return (
            f"{name!r} is a regression metric, but the task is classification: choose from {', '.join(classification)}."
        )
    if task.name == "regression" and name not in REGRESSION_METRICS:
        return f"{name!r} is a classification metric, but the task is regression: choose from {', '.join(REGRESSION_METRICS)}."
    if task.name == "regression":
        return None
    k, classes = top_k(name), task.classes or 0
    one_logit = task.kind == "binary"
    if (k is not None or name == "perplexity") and one_logit:
        return (
            f"{name!r} needs one logit per class, but the model returns one logit per 0/1 target: choose from "
            "accuracy, f1, precision, recall, confusion_matrix."
        )
    if k is not None and k >= classes:
        return f"{name!r} looks among the top {k} of {classes} classes, which always hold the label: choose K below {classes}."
    if name == "confusion_matrix" and classes > READABLE_CLASSES:
        return (
            f"'confusion_matrix' of {classes:,} classes would hold {classes * classes:,} counts and cannot be read: "
            f"it is kept for at most {READABLE_CLASSES} classes. Per-class precision, recall and F1 "
            "(trainwell.evaluate's per_class, with 'f1', 'precision' or 'recall' chosen) take memory in "
            "proportion to the classes."
        )
    return None
