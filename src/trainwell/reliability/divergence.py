"""Non-finite losses and gradients: detected on the step they happen, skipped, never ignored.

Two modes, one policy:

- **host** (CPU, or optimizers that cannot skip on the device): the step's loss and gradient
  norm are read on the host, where that read costs nothing; a bad step never reaches the
  optimizer.
- **device** (accelerators with a fused optimizer): the verdict stays on the device and is
  handed to the fused optimizer as ``found_inf``, the same channel torch's GradScaler uses, so
  the kernel skips the update without a host synchronisation. Counters are read at each log
  interval and at the end of every epoch.

Either way, ``max_consecutive`` bad steps in a row call ``on_diverged`` (the Trainer rolls back
to the last good state, see :mod:`trainwell.reliability.healing`) or, without one, raise :class:`DivergenceError`.
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
        advice: Says what to change, appended to the DivergenceError message: a text, or a
            function returning it when the error is raised (so that it quotes the lr of that moment).
        on_skip: Called as ``on_skip(message, *args, skipped=n)`` when steps were skipped;
            logs a warning by default (the Trainer records an event).
        on_diverged: Called as ``on_diverged(run, step)`` when ``max_consecutive`` steps in a
            row were bad; it may repair the state and return (the count starts again) or raise.
            None raises :class:`DivergenceError`.
        bad: What a bad step is, for messages (``"non-finite or spiking"`` with spike detection).

    Example:
        >>> guard = NonFiniteGuard(max_consecutive=2)
        >>> guard.observe(False, step=7)
        >>> guard.skipped
        1
    """

    def __init__(
        self,
        max_consecutive: int,
        advice: str | Callable[[], str] = "",
        on_skip: Callable[..., None] | None = None,
        on_diverged: Callable[[int, int], None] | None = None,
        bad: str = "non-finite",
    ) -> None:
        self.max_consecutive = max_consecutive
        self.bad = bad
        self._advice = advice
        self.on_skip = on_skip or _log_skip
        self.on_diverged = on_diverged
        self.skipped = 0
        self.consecutive = 0
        self._device_bad_total: torch.Tensor | None = None
        self._device_run: torch.Tensor | None = None
        self._device_longest_run: torch.Tensor | None = None

    @property
    def advice(self) -> str:
        """What to change, as of now."""
        return self._advice() if callable(self._advice) else self._advice

    def observe(self, finite: bool, step: int, reason: str = "Non-finite loss or gradient") -> None:
        """Host mode: record whether ``step`` was good (its update must be skipped if not) and why not."""
        if finite:
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        self.on_skip(
            "%s at step %d: update skipped (%d in a row, %d allowed).",
            reason,
            step,
            self.consecutive,
            self.max_consecutive,
            skipped=1,
        )
        if self.consecutive >= self.max_consecutive:
            self._diverged(self.consecutive, step)

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
        new_bad, longest, current = (
            int(v) for v in torch.stack([self._device_bad_total, self._device_longest_run, self._device_run]).tolist()
        )
        self._device_bad_total = self._device_run = self._device_longest_run = None
        if new_bad:
            self.skipped += new_bad
            self.on_skip(
                "%d steps with a %s loss or gradient were skipped up to step %d.",
                new_bad,
                self.bad,
                step,
                skipped=new_bad,
            )
        self.consecutive = current
        if longest >= self.max_consecutive:
            self._diverged(longest, step)

    def _diverged(self, run: int, step: int) -> None:
        if self.on_diverged is None:
            raise DivergenceError(self.describe(run, step) + " " + self.advice)
        self.on_diverged(run, step)
        self.consecutive = 0

    def state_dict(self) -> dict[str, Any]:
        """The counts (call :meth:`flush` first in device mode: a checkpoint needs the verdicts read)."""
        return {"skipped": self.skipped, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skipped = state["skipped"]
        self.consecutive = state["consecutive"]

    def describe(self, run: int, step: int) -> str:
        """What went wrong, for a DivergenceError: how many bad steps in a row, up to which step."""
        return (
            f"Training diverged: the loss or gradients were {self.bad} for {run} steps in a row "
            f"(up to step {step}; {self.skipped} skipped in all, max_nonfinite_steps={self.max_consecutive})."
        )


def check_finite_end(
    module: torch.nn.Module, *, steps: int, skipped: int, advice: str = "", total: Any = None
) -> None:
    """Refuse to end training with a model that holds non-finite values, or that no step ever changed.

    A run can end with weights that went non-finite on a step whose loss was still finite (e.g.
    ``weight_decay=1e308``), or with every step skipped (all-inf inputs): no run of bad steps long
    enough for the guard, yet the model is broken or untrained. One pass over the parameters and
    buffers at the end (one host synchronisation) catches both.

    Args:
        module: The trained module, as ``fit`` would return it.
        steps: Optimizer steps taken in the run.
        skipped: Steps whose update was skipped as non-finite.
        advice: What to change, appended to the message.
        total: Under torchrun, sums a tensor over the processes (``Session.sum``): a sharded
            module's tensors are checked shard by shard, and every process reaches the same verdict.

    Raises:
        DivergenceError: naming the tensors with non-finite values (and how many), or the skipped steps.

    Example:
        >>> check_finite_end(torch.nn.Linear(2, 1), steps=10, skipped=0)
    """
    named = [(name, t) for name, t in (*module.named_parameters(), *module.named_buffers()) if t.is_floating_point()]
    counts = []
    if named:
        # A sharded (FSDP) tensor is checked by its local shard, the processes' counts added up.
        local = [getattr(t, "to_local", lambda t=t: t)().detach() for _, t in named]
        summed = torch.stack([(~torch.isfinite(t)).sum() for t in local])
        counts = (total(summed) if total is not None else summed).tolist()
    broken = [(name, count, tensor.numel()) for (name, tensor), count in zip(named, counts) if count]
    if broken:
        shown = ", ".join(f"{name} ({count:,} of {size:,} values)" for name, count, size in broken[:5])
        more = f" and {len(broken) - 5} more tensors" if len(broken) > 5 else ""
        raise DivergenceError(
            f"Training ended with a broken model: non-finite values in {shown}{more}, after {steps} steps "
            f"({skipped} skipped as non-finite). The weights went non-finite on steps whose loss was still finite "
            f"(an update too large: lr, weight_decay or momentum too high), so no rollback was triggered. {advice}".rstrip()
        )
    if steps and skipped >= steps:
        raise DivergenceError(
            f"Training ended without learning anything: all {steps} steps had a non-finite loss or gradient and were "
            f"skipped, so the model is still its initial weights. {advice}".rstrip()
        )


def judged_on_device(device: torch.device, scaled: bool, fused: bool) -> bool:
    """Whether non-finite steps are judged on the device (no per-step sync) or on the host.

    On the CPU a host read costs nothing, so the host decides. On accelerators the verdict
    stays on the device when the update can be skipped there: by a fused optimizer's
    ``found_inf`` input (``fused``), or by the GradScaler under fp16 (``scaled``).

    Example:
        >>> judged_on_device(torch.device("cpu"), scaled=False, fused=True)
        False
    """
    return device.type != "cpu" and (scaled or fused)


def _log_skip(message: str, *args: Any, skipped: int) -> None:
    logger.warning(message, *args)


class LossSpikeDetector:
    """Flags a loss above ``factor`` times the running mean of the good losses before it.

    The running mean is an exponential moving average over roughly the last 50 good steps; the
    first ``warmup_steps`` good steps are never flagged, while the mean settles. Both a host
    version (CPU, where reading the loss is free) and a device version (no synchronisation) exist.

    Args:
        factor: How many times the running mean counts as a spike (> 1).
        warmup_steps: Good steps observed before any is flagged.
        device: Where device mode keeps its running mean (for a restored state).

    Example:
        >>> detector = LossSpikeDetector(factor=3.0, warmup_steps=2)
        >>> [detector.check(v) for v in (1.0, 1.0, 1.1)]
        [None, None, None]
        >>> detector.check(9.0)
        'Loss spike (9, over 3x its running mean)'
    """

    DECAY = 0.98

    def __init__(self, factor: float, warmup_steps: int = 20, device: torch.device | None = None) -> None:
        self.factor = factor
        self.device = device
        self.warmup_steps = warmup_steps
        self.mean: float | None = None
        self.seen = 0
        self._device_mean: torch.Tensor | None = None
        self._device_seen: torch.Tensor | None = None

    def check(self, loss: float) -> str | None:
        """Host mode: why ``loss`` counts as a spike, or None; a loss that does not spike updates the running mean."""
        if self.mean is not None and self.seen >= self.warmup_steps and loss > self.factor * self.mean:
            return f"Loss spike ({loss:.4g}, over {self.factor:g}x its running mean)"
        self.mean = loss if self.mean is None else self.DECAY * self.mean + (1 - self.DECAY) * loss
        self.seen += 1
        return None

    def spikes_on_device(self, loss: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """Device mode: ``bad`` or'ed with whether ``loss`` spikes, without a host synchronisation."""
        loss = loss.detach().float()
        if self._device_mean is None:
            self._device_mean = torch.zeros((), device=loss.device)
            self._device_seen = torch.zeros((), dtype=torch.int64, device=loss.device)
        settled = self._device_seen >= self.warmup_steps
        spike = settled & (loss > self.factor * self._device_mean)
        bad = bad | spike
        good = ~bad
        first = self._device_seen == 0
        updated = torch.where(first, loss, self.DECAY * self._device_mean + (1 - self.DECAY) * loss)
        self._device_mean = torch.where(good, updated, self._device_mean)
        self._device_seen = self._device_seen + good.to(torch.int64)
        return bad

    def state_dict(self) -> dict[str, Any]:
        """The running mean of either mode, so that a resumed run flags the same spikes."""
        device = None
        if self._device_mean is not None:
            device = {"mean": self._device_mean.detach().cpu(), "seen": self._device_seen.detach().cpu()}
        return {"mean": self.mean, "seen": self.seen, "device": device}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.seen = state["mean"], state["seen"]
        saved = state["device"]
        if saved is None:
            self._device_mean = self._device_seen = None
        else:
            self._device_mean, self._device_seen = saved["mean"].to(self.device), saved["seen"].to(self.device)
