"""One training step, the same wherever a step is taken: the training loop, out-of-memory recovery and the LR finder.

    with autocast: loss = train_step((inputs, targets))   # the user's step when overridden
    backward, scaled under fp16                           # as accumulated micro-batches once memory ran out
    under DDP: the loss averaged over the processes       # every process judges the same number
    unscale and clip the gradient norm
    a non-finite loss or norm (or a loss spike) is a bad step: its update is skipped and the guard counts it
    optimizer step; zero the gradients; move the weights' moving average (with ema_decay)

Where the verdict is reached depends on the device (:mod:`trainwell.reliability.divergence`): on
the host where reading the loss is free (the CPU), on the device otherwise, so that the hot loop
never waits for it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.exceptions import DataError
from trainwell.reliability.oom import MicroBatching

if TYPE_CHECKING:
    from trainwell.distributed.session import Session
    from trainwell.loop.averaging import WeightAverage
    from trainwell.loop.precision import Precision
    from trainwell.loop.state import TrainState
    from trainwell.reliability.divergence import LossSpikeDetector, NonFiniteGuard


class StepRunner:
    """Takes optimizer steps: forward, backward, clip, judge, step.

    Args:
        train_step: What a step computes: ``train_step((inputs, targets))`` returns the loss (a
            scalar tensor, alone or as ``{"loss": tensor}``).
        optimizer: The optimizer to step.
        precision: Autocast, (scaled) backward and step.
        parameters: The trainable parameters whose gradient norm is clipped.
        state: The loop state: the epoch's loss sums grow here, events are recorded here.
        guard: Counts bad steps and acts on runs of them.
        spikes: Flags loss spikes as bad steps too, or None.
        max_grad_norm: Clip the gradient norm to this; None does not clip.
        on_device: Judge steps on the device (no host sync) instead of on the host.
        session: Under torchrun, the process's session (loss averaging, ``no_sync``); None alone.
        micro_batching: The split of batches that ran out of memory.
        split_on_oom: Retry a batch that runs out of memory as micro-batches (else the error propagates).
        averaging: The moving average of the weights to update after each optimizer step, or None.

    Attributes:
        last_grad_norm: The last step's gradient norm before clipping (a device tensor), or None.
    """

    def __init__(
        self,
        train_step: Callable[[Any], Any],
        optimizer: torch.optim.Optimizer,
        precision: Precision,
        parameters: Iterable[nn.Parameter],
        *,
        state: TrainState,
        guard: NonFiniteGuard,
        spikes: LossSpikeDetector | None = None,
        max_grad_norm: float | None = None,
        on_device: bool = False,
        session: Session | None = None,
        micro_batching: MicroBatching | None = None,
        split_on_oom: bool = True,
        averaging: WeightAverage | None = None,
    ) -> None:
        self.train_step = train_step
        self.optimizer = optimizer
        self.precision = precision
        self.parameters = list(parameters)
        self.state = state
        self.guard = guard
        self.spikes = spikes
        self.max_grad_norm = max_grad_norm
        self.on_device = on_device
        self.session = session
        self.micro_batching = micro_batching or MicroBatching()
        self.split_on_oom = split_on_oom
        self.averaging = averaging
        self.last_grad_norm: torch.Tensor | None = None

    def __call__(self, inputs: Any, targets: Any) -> torch.Tensor:
        """One optimizer step on the batch; returns its loss (out of memory: as micro-batches, :mod:`~trainwell.reliability.oom`)."""
        if self.micro_batching.chunks > 1:
            return self.micro_batching.step(inputs, targets, self._accumulate, self._finish)
        try:
            with self.precision.autocast():
                loss = loss_of(self.train_step((inputs, targets)))
            self._backward_and_step(loss)
            return loss
        except torch.OutOfMemoryError:
            if not self.split_on_oom:
                raise
            loss = None
        # Retried only here, after the except block, once the failed attempt's tensors are released.
        return self.micro_batching.recover(
            inputs,
            targets,
            self._accumulate,
            self._finish,
            optimizer=self.optimizer,
            device=self.precision.device,
            step=self.state.global_step,
            record_event=self.state.record_event,
        )

    def _accumulate(self, inputs: Any, targets: Any, weight: float, last: bool) -> torch.Tensor:
        """One micro-batch's forward and backward, its loss weighted by its share of the batch."""
        # Under DDP, gradients are averaged across processes once, with the last micro-batch's backward.
        with self.session.no_sync(last) if self.session is not None else contextlib.nullcontext():
            with self.precision.autocast():
                loss = loss_of(self.train_step((inputs, targets)))
            self.precision.backward(loss * weight)
        part = loss.detach().float() * weight
        del loss
        return part

    def _finish(self, loss: torch.Tensor) -> None:
        self._backward_and_step(loss, backward=False)

    def _backward_and_step(self, loss: torch.Tensor, backward: bool = True) -> None:
        """Backward (unless the gradients are already accumulated), clip, and step unless the step went bad."""
        if backward:
            self.precision.backward(loss)
        if self.session is not None:
            # Every process judges the step by the same number: the mean loss of the global batch.
            loss = self.session.mean(loss)
        grad_norm = None
        if self.max_grad_norm is not None:
            self.precision.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
            # Kept on the device; loggers read it only at their logging interval.
            self.last_grad_norm = grad_norm
        scaled = self.precision.scaler is not None
        # Under fp16 a GradScaler skips steps with overflowing gradients and lowers its scale;
        # that is calibration, not divergence, so only the loss itself is judged there.
        judge_norm = grad_norm is not None and not scaled
        state = self.state
        if self.on_device:
            bad = ~torch.isfinite(loss.detach() + grad_norm if judge_norm else loss.detach())
            if self.spikes is not None:
                bad = self.spikes.spikes_on_device(loss, bad)
            if not scaled:
                self.optimizer.found_inf = bad.float()
            self.precision.step(self.optimizer)
            self.guard.observe_on_device(bad)
            state.loss_sum = state.loss_sum + torch.where(bad, 0.0, loss.detach().float())
            state.loss_count = state.loss_count + (~bad).to(state.loss_count.dtype)
        else:
            loss_value = loss.item()
            finite = math.isfinite(loss_value) and (not judge_norm or math.isfinite(grad_norm.item()))
            spike = self.spikes.check(loss_value) if finite and self.spikes is not None else None
            good = finite and spike is None
            if good or scaled:
                self.precision.step(self.optimizer)
            if good:
                state.loss_sum += loss_value
                state.loss_count += 1
            self.guard.observe(good, state.global_step, reason=spike or "Non-finite loss or gradient")
        self.optimizer.zero_grad(set_to_none=True)
        if self.averaging is not None:
            # Also after a skipped step: the weights did not move, so the average only moves towards them.
            self.averaging.update()

    def state_dict(self) -> dict[str, Any]:
        norm = self.last_grad_norm
        return {"last_grad_norm": norm.detach().cpu() if norm is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_grad_norm = state["last_grad_norm"]


def compiled_first_step(runner: StepRunner, inputs: Any, targets: Any) -> tuple[torch.Tensor, float]:
    """The first step under ``torch.compile``, timed: it carries the compilation, recorded as a ``compile`` event.

    Returns:
        The step's loss and the seconds it took (left out of the epoch's throughput).
    """
    started = time.perf_counter()
    loss = runner(inputs, targets)
    device = runner.precision.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    runner.state.record_event(
        "compile", message=f"torch.compile: the first step, with compilation, took {seconds:.1f} s.", compile_time_s=seconds
    )
    return loss, seconds


def loss_of(out: Any) -> torch.Tensor:
    """The loss a step returned: a scalar tensor, alone or as ``{"loss": tensor}``.

    Raises:
        DataError: anything else, saying what was returned.

    Example:
        >>> loss_of({"loss": torch.tensor(0.5)})
        tensor(0.5000)
    """
    loss = out["loss"] if isinstance(out, dict) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise DataError(
            f"the step returned {batches.describe(loss)} as its loss: expected a scalar tensor, "
            "either alone or as {'loss': tensor}."
        )
    return loss
