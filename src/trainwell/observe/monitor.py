"""Monitor: the pure decision behind early stopping and best-checkpoint selection."""

from __future__ import annotations

import math
from typing import Any


class Monitor:
    """Tracks the best value of one metric and how long it has not improved.

    Args:
        metric: The metric's name, e.g. ``"val_loss"``.
        mode: ``"min"`` when lower is better, ``"max"`` when higher is better.
        min_delta: How much better a value must be than the best to count as an improvement.
        patience: Non-improving updates tolerated before :attr:`exhausted` turns true;
            None never exhausts.

    Example:
        >>> monitor = Monitor("val_loss", patience=2)
        >>> [monitor.update(v) for v in (1.0, 0.9, 0.95, 0.97)]
        [True, True, False, False]
        >>> monitor.exhausted, monitor.best
        (True, 0.9)
    """

    def __init__(self, metric: str, mode: str = "min", min_delta: float = 0.0, patience: int | None = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not a valid choice: expected 'min' or 'max'.")
        if min_delta < 0:
            raise ValueError(f"min_delta={min_delta} is out of range: expected a number ≥ 0.")
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

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.bad_updates >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_updates": self.bad_updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_updates = state["bad_updates"]
