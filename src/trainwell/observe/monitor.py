"""Monitor: which value of a metric is the best, the one decision behind early stopping, the best
checkpoint, the weights a run ends with, the state a rollback returns to and ``FitResult.best``.

Every place that asks "which epoch is best?" asks a :class:`Monitor`, so that they can never
disagree: a value is an improvement when it beats the best so far by more than ``min_delta``
(lower for ``mode="min"``, higher for ``mode="max"``); between equal values the earlier one stays
the best.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from trainwell.exceptions import ConfigError

Item = TypeVar("Item")


class Monitor:
    """Tracks the best value of one metric and how long it has not improved.

    Args:
        metric: The metric's name, e.g. ``"val_loss"``.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is better, ``"auto"`` by the
            metric's name (:func:`resolve_mode`).
        min_delta: How much better a value must be than the best to count as an improvement.
        patience: Non-improving updates tolerated before :attr:`exhausted` turns true;
            None never exhausts.

    Raises:
        ConfigError: an invalid mode, or a ``min_delta`` that is not a number ≥ 0.

    Example:
        >>> monitor = Monitor("val_loss", patience=2)
        >>> [monitor.update(v) for v in (1.0, 0.9, 0.95, 0.97)]
        [True, True, False, False]
        >>> monitor.exhausted, monitor.best
        (True, 0.9)
    """

    def __init__(self, metric: str, mode: str = "min", min_delta: float = 0.0, patience: int | None = None) -> None:
        mode = resolve_mode(metric, mode)
        if mode not in ("min", "max"):
            raise ConfigError(f"mode={mode!r} is not a valid choice: expected 'auto', 'min' or 'max'.")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ConfigError(f"min_delta={min_delta!r} is out of range: expected a number ≥ 0.")
        self.metric = metric
        self.mode = mode
        self.min_delta = min_delta
        self.patience = patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_updates = 0

    def is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float, epoch: int | None = None) -> bool:
        """Record ``value``; return whether it is a new best."""
        improved = self.is_improvement(value)
        if improved:
            self.best, self.best_epoch, self.bad_updates = value, epoch, 0
        else:
            self.bad_updates += 1
        return improved

    def value_in(self, row: dict[str, Any]) -> Any:
        """The monitored metric's value in an epoch's ``row``.

        Raises:
            ConfigError: the row has no such metric (naming those it has, and the closest).

        Example:
            >>> Monitor("val_acc").value_in({"epoch": 1, "val_loss": 0.3, "val_accuracy": 0.9})
            Traceback (most recent call last):
            ...
            trainwell.exceptions.ConfigError: monitor='val_acc' is not a metric of this run: ...
        """
        if self.metric in row:
            return row[self.metric]
        names = sorted(name for name, value in row.items() if is_number(value) and name != "epoch")
        close = difflib.get_close_matches(self.metric, names, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"monitor={self.metric!r} is not a metric of this run: its epochs record {', '.join(names)}.{hint}"
        )

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.bad_updates >= self.patience

    def best_index(self, values: Sequence[float | None]) -> int | None:
        """The index of the best of ``values`` (in the order they happened), by this monitor's rule.

        Non-finite and missing values never count. The monitor itself is left as it is.

        Example:
            >>> Monitor("val_loss").best_index([0.9, 0.5, None, 0.5, 0.7])
            1
            >>> Monitor("val_accuracy", mode="max").best_index([0.8, 0.95, 0.9])
            1
        """
        replay = Monitor(self.metric, self.mode, self.min_delta)
        best = None
        for index, value in enumerate(values):
            if is_number(value) and replay.update(float(value)):
                best = index
        return best

    def ranked(self, items: Sequence[Item], value: Callable[[Item], float | None]) -> list[Item]:
        """``items`` (in the order they happened) that have a value, best first.

        The first is the one :meth:`best_index` picks; the others follow by value, earlier first
        between equal values.

        Example:
            >>> Monitor("val_loss").ranked([0.3, None, 0.1, 0.2], value=lambda v: v)
            [0.1, 0.2, 0.3]
        """
        values = [value(item) for item in items]
        best = self.best_index(values)
        sign = 1.0 if self.mode == "min" else -1.0
        others = sorted(
            (index for index, v in enumerate(values) if is_number(v) and index != best),
            key=lambda index: (sign * float(values[index]), index),
        )
        return [items[index] for index in ([best] if best is not None else []) + others]

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_updates": self.bad_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_updates = state["bad_updates"]


# Metrics that are better higher, by the first word of their name (after val_/train_): what mode="auto" maximises.
HIGHER_IS_BETTER = ("accuracy", "acc", "f1", "precision", "recall", "r2", "auc", "auroc", "iou", "dice", "bleu")


def resolve_mode(metric: str, mode: str = "auto") -> str:
    """``mode``, or for ``"auto"`` the direction in which ``metric`` improves: ``"max"`` for accuracy-like metrics.

    Example:
        >>> resolve_mode("val_accuracy"), resolve_mode("val_top5"), resolve_mode("val_loss"), resolve_mode("val_mae")
        ('max', 'max', 'min', 'min')
    """
    if mode != "auto":
        return mode
    stem = metric.split("_", 1)[1] if metric.startswith(("val_", "train_")) else metric
    first = stem.split("_")[0].lower()
    return "max" if first in HIGHER_IS_BETTER or (first.startswith("top") and first[3:].isdigit()) else "min"


def run_monitor(
    min_delta: float = 0.0, validated: bool = True, metric: str | None = None, mode: str = "auto"
) -> Monitor:
    """The monitor that decides a run's best epoch: ``metric`` (the config's ``monitor``), by default the
    lowest val_loss (train_loss without validation).

    Args:
        min_delta: The run's ``early_stopping_min_delta``: smaller improvements do not count.
        validated: Whether the run validates (else its training loss is all there is).
        metric: The config's ``monitor``: a key of an epoch's row; None for the default.
        mode: The config's ``mode``: ``"min"``, ``"max"`` or ``"auto"`` (:func:`resolve_mode`).

    Example:
        >>> run_monitor().metric, run_monitor(validated=False).metric
        ('val_loss', 'train_loss')
        >>> run_monitor(metric="val_accuracy").mode
        'max'
    """
    metric = metric or ("val_loss" if validated else "train_loss")
    return Monitor(metric, resolve_mode(metric, mode), min_delta)


def configured_monitor(options: Mapping[str, Any], validated: bool = True) -> Monitor:
    """The monitor a run's saved options chose (its config.yaml: ``monitor``, ``mode``, ``early_stopping_min_delta``).

    Args:
        options: The run's options as saved (missing ones take their defaults).
        validated: Whether the run validated (else its default monitor is train_loss).

    Example:
        >>> configured_monitor({"monitor": "val_accuracy", "early_stopping_min_delta": 0.01}).min_delta
        0.01
        >>> configured_monitor({}, validated=False).metric
        'train_loss'
    """
    return run_monitor(
        options.get("early_stopping_min_delta") or 0.0,
        validated=validated,
        metric=options.get("monitor"),
        mode=options.get("mode") or "auto",
    )


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (not a bool): a metric value that can be compared or plotted."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
