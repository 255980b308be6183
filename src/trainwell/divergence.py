"""Non-finite losses and gradients: detected on the step they happen, skipped, never ignored.

Two modes, one policy:

- **host** (CPU, or optimizers that cannot skip on the device): the step's loss and gradient
  norm are read on the host, where that read costs nothing; a bad step never reaches the
  optimizer.
- **device** (accelerators with a fused optimizer): the verdict stays on the device and is
  handed to the fused optimizer as ``found_inf``, the same channel torch's GradScaler uses, so
  the kernel skips the update without a host synchronisation. Counters are read at each log
  interval and at the end of every epoch.

Either way, ``max_consecutive`` bad steps in a row raise :class:`DivergenceError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from trainwell.exceptions import DivergenceError

logger = logging.getLogger("trainwell")


class NonFiniteGuard:
    """Counts non-finite steps and stops training after too many in a row.

    Args:
        max_consecutive: Bad steps in a row tolerated (each skipped) before DivergenceError.
        advice: Says what to change; appended to the DivergenceError message.
        on_skip: Called as ``on_skip(message, *args, skipped=n)`` when steps were skipped;
            logs a warning by default (the Trainer records an event).

    Example:
        >>> guard = NonFiniteGuard(max_consecutive=2)
        >>> guard.observe(False, step=7)
        >>> guard.skipped
        1
    """

    def __init__(self, max_consecutive: int, advice: str = "", on_skip: Callable[..., None] | None = None) -> None:
        self.max_consecutive = max_consecutive
        self.advice = advice
        self.on_skip = on_skip or _log_skip
        self.skipped = 0
        self.consecutive = 0
        self._device_bad_total: torch.Tensor | None = None
        self._device_run: torch.Tensor | None = None
        self._device_longest_run: torch.Tensor | None = None

    def observe(self, finite: bool, step: int) -> None:
        """Host mode: record whether ``step`` was finite (its update must be skipped if not)."""
        if finite:
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        self.on_skip(
            "Non-finite loss or gradient at step %d: update skipped (%d in a row, %d allowed).",
            step,
            self.consecutive,
            self.max_consecutive,
            skipped=1,
        )
        if self.consecutive >= self.max_consecutive:
            self._fail(self.consecutive, step)

    def observe_on_device(self, bad: torch.Tensor) -> None:
        """Device mode: accumulate a 0-dim bool tensor of this step's verdict, without syncing."""
        bad = bad.to(torch.int64)
        if self._device_bad_total is None:
            self._device_bad_total = torch.zeros((), dtype=torch.int64, device=bad.device)
            self._device_run = torch.full((), self.consecutive, dtype=torch.int64, device=bad.device)
            self._device_longest_run = torch.zeros((), dtype=torch.int64, device=bad.device)
        self._device_bad_total += bad
        self._device_run = (self._device_run + bad) * bad
        torch.maximum(self._device_longest_run, self._device_run, out=self._device_longest_run)

    def flush(self, step: int) -> None:
        """Device mode: read the counters (one sync) and raise if a run of bad steps was too long."""
        if self._device_bad_total is None:
            return
        new_bad, longest, current = (int(v) for v in torch.stack(
            [self._device_bad_total, self._device_longest_run, self._device_run]
        ).tolist())
        self._device_bad_total = self._device_run = self._device_longest_run = None
        if new_bad:
            self.skipped += new_bad
            self.on_skip("%d steps with a non-finite loss or gradient were skipped up to step %d.", new_bad, step, skipped=new_bad)
        self.consecutive = current
        if longest >= self.max_consecutive:
            self._fail(longest, step)

    def _fail(self, run: int, step: int) -> None:
        raise DivergenceError(
            f"Training diverged: the loss or gradients were non-finite for {run} steps in a row "
            f"(up to step {step}; {self.skipped} skipped in all, max_nonfinite_steps={self.max_consecutive}). "
            + self.advice
        )


def _log_skip(message: str, *args: Any, skipped: int) -> None:
    logger.warning(message, *args)
