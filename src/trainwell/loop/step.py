"""One training step, the same wherever a step is taken: the training loop, out-of-memory recovery and the LR finder.

    with autocast: loss = train_step((inputs, targets))   # the user's step when overridden
    backward, scaled under fp16                           # as accumulated micro-batches once memory ran out
    (accumulate_grad_batches=N: the above for N batches,  # each loss / N, no DDP sync but on the last)
    under DDP: the loss averaged over the processes       # every process judges the same number
    unscale and clip the gradient norm
    a non-finite loss or norm (or a loss spike) is a bad step: its update is skipped and the guard counts it
    optimizer step; zero the gradients; move the weights' moving average (with ema_decay)

An optimizer whose ``step`` needs a closure (``torch.optim.LBFGS``) gets one that recomputes the
step (zero the gradients, train_step, backward, clip) as often as it asks; the step is judged by
its first evaluation, and a bad one has its gradient zeroed, which LBFGS takes as "no update".

Where the verdict is reached depends on the device (:mod:`trainwell.reliability.divergence`): on
the host where reading the loss is free (the CPU), on the device otherwise, so that the hot loop
never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.exceptions import DataError
from trainwell.loop.optimizers import needs_closure
from trainwell.reliability.oom import MicroBatching

if TYPE_CHECKING:
    from trainwell.distributed.session import Session
    from trainwell.loop.averaging import WeightAverage
    from trainwell.loop.batch_check import BatchCheck
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
        batch_check: Device mode: the check of every batch's targets, whose verdict on the step's
            batch (:attr:`~trainwell.loop.batch_check.BatchCheck.step_bad`) skips the update too.
        accumulate: Batches whose gradients are summed before each optimizer step (a gradient window).
        averaging: The moving average of the weights to update after each optimizer step, or None.

    Attributes:
        last_grad_norm: The last step's gradient norm before clipping (a device tensor), or None.
        stepped: Whether the last call took an optimizer step (False inside a gradient window).
        closure: Whether the optimizer's ``step`` takes a closure (LBFGS).
        compiling: Whether the next call carries ``torch.compile``'s compilation (then it is timed,
            recorded as a ``compile`` event, and its time kept apart: :meth:`pop_compile_seconds`).
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
        batch_check: BatchCheck | None = None,
        accumulate: int = 1,
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
        self.batch_check = batch_check
        self.accumulate = accumulate
        self.closure = needs_closure(optimizer)
        self.averaging = averaging
        self.last_grad_norm: torch.Tensor | None = None
        self.stepped = False
        self.window = GradientWindow()
        self.compiling = False
        self._compile_seconds = 0.0

    def __call__(self, inputs: Any, targets: Any, left_in_epoch: int | None = None) -> torch.Tensor:
        """One batch: an optimizer step on it, or its part of a gradient window; returns its loss.

        Args:
            inputs, targets: The batch, on the device.
            left_in_epoch: Batches left in the epoch, this one included (None when unknown): the
                epoch's last gradient window holds only those.
        """
        if self.compiling:
            return self._compiled(inputs, targets, left_in_epoch)
        self.stepped = True
        if self.closure:
            return self._closure_step(inputs, targets)
        if self.accumulate > 1:
            return self._windowed(inputs, targets, left_in_epoch)
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

    def _compiled(self, inputs: Any, targets: Any, left_in_epoch: int | None) -> torch.Tensor:
        """The first step under ``torch.compile``, timed: it carries the compilation."""
        self.compiling = False
        started = time.perf_counter()
        loss = self(inputs, targets, left_in_epoch)
        if self.precision.device.type == "cuda":
            torch.cuda.synchronize(self.precision.device)
        seconds = time.perf_counter() - started
        self._compile_seconds += seconds
        self.state.record_event(
            "compile",
            message=f"torch.compile: the first step, with compilation, took {seconds:.1f} s.",
            compile_time_s=seconds,
        )
        return loss

    def pop_compile_seconds(self) -> float:
        """Seconds spent compiling since the last call (to leave out of the epoch's throughput)."""
        seconds, self._compile_seconds = self._compile_seconds, 0.0
        return seconds

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

    def _windowed(self, inputs: Any, targets: Any, left_in_epoch: int | None) -> torch.Tensor:
        """One batch of a gradient window: backward of its loss / (the window's batches); the last batch steps."""
        window = self.window
        if window.batches == 0:
            window.size = self.accumulate if left_in_epoch is None else max(1, min(self.accumulate, left_in_epoch))
        last = window.batches + 1 >= window.size
        part = self._weighted(inputs, targets, 1.0 / window.size, last)
        window.add(part)
        self.stepped = last
        if last:
            self._finish(window.close())
        return part * window.size  # the batch's own loss (the window may have restarted after an out-of-memory error)

    def _weighted(self, inputs: Any, targets: Any, weight: float, sync: bool) -> torch.Tensor:
        """Forward and backward of a batch whose loss counts ``weight`` in the step (split once out of memory)."""

        def accumulate(part_inputs: Any, part_targets: Any, share: float, last: bool) -> torch.Tensor:
            return self._accumulate(part_inputs, part_targets, share * weight, sync and last)

        if self.micro_batching.chunks > 1:
            return self.micro_batching.step(inputs, targets, accumulate, finish=lambda loss: None)
        try:
            return self._accumulate(inputs, targets, weight, sync)
        except torch.OutOfMemoryError:
            if not self.split_on_oom:
                raise
        # A backward cut short by the error may have added part of its gradient: the window's earlier
        # batches go with it, and the window starts again from this batch.
        if self.window.batches:
            self.state.record_event(
                "oom_window_dropped",
                logging.WARNING,
                f"Out of memory inside a gradient window at step {self.state.global_step}: the gradients of its "
                f"{self.window.batches} earlier batches are dropped; the step is taken on the batches from this one.",
                dropped_batches=self.window.batches,
            )
            self.window.size -= self.window.batches
            self.window.restart()
            weight = 1.0 / self.window.size
        return self.micro_batching.recover(
            inputs,
            targets,
            accumulate,
            finish=lambda loss: None,
            optimizer=self.optimizer,
            device=self.precision.device,
            step=self.state.global_step,
            record_event=self.state.record_event,
        )

    def flush(self) -> bool:
        """Step on a gradient window the epoch ended inside (a loader without a length); return whether it stepped.

        The window's gradient and loss are rescaled to the mean over the batches it holds.
        """
        window = self.window
        if window.batches == 0:
            return False
        # Under torchrun every loader has a length, so windows always end on a synchronised batch.
        scale = window.size / window.batches
        for parameter in self.parameters:
            if parameter.grad is not None:
                parameter.grad.mul_(scale)
        self._finish(window.close() * scale)
        return True

    def _closure_step(self, inputs: Any, targets: Any) -> torch.Tensor:
        """An optimizer step that calls back for the loss and gradient (LBFGS); judged by its first evaluation."""
        # The first evaluation: the loss, its value (read once, here), whether it is good, the spike reason.
        first: list[tuple[torch.Tensor, float, bool, str | None]] = []

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=False)
            with self.precision.autocast():
                loss = loss_of(self.train_step((inputs, targets)))
            self.precision.backward(loss)
            if self.session is not None:
                # The same number in every process, so that the optimizer decides the same everywhere.
                loss = self.session.mean(loss.detach())
            norm = None
            if self.max_grad_norm is not None:
                norm = nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
                self.last_grad_norm = norm
            if not first:
                value = loss.item()
                good = math.isfinite(value) and (norm is None or math.isfinite(norm.item()))
                spike = self.spikes.check(value) if good and self.spikes is not None else None
                first.append((loss.detach(), value, good and spike is None, spike))
                if not first[0][2]:
                    self.optimizer.zero_grad(set_to_none=False)  # no gradient: LBFGS takes no step
            return loss

        self.optimizer.step(closure)
        loss, value, good, spike = first[0]
        state = self.state
        if good:
            state.loss_sum += value
            state.loss_count += 1
        if self.averaging is not None:
            self.averaging.update()
        self.guard.observe(good, state.global_step, reason=spike or "Non-finite loss or gradient")
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    def _backward_and_step(self, loss: torch.Tensor, backward: bool = True) -> None:
        """Backward (unless the gradients are already accumulated), clip, and step unless the step went bad."""
        if backward:
            self.precision.backward(loss)
        bad_batch = self._bad_batch()
        if bad_batch is not None and self.precision.scaler is not None:
            # The GradScaler skips a step whose gradients are not finite: make a bad batch's so.
            grads = [p.grad for p in self.parameters if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, torch.where(bad_batch, math.nan, 1.0).to(grads[0].dtype))
        if self.session is not None:
            # Every process judges the step by the same number: the mean loss of the global batch.
            loss = self.session.mean(loss)
        grad_norm = None
        if self.max_grad_norm is not None:
            self.precision.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
            if self.session is not None:  # FSDP: the norm over every process's pieces, as a plain tensor
                grad_norm = self.session.plain(grad_norm)
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
            # A batch that failed its check is skipped too, but it is a data error, not a bad step.
            skip = bad if bad_batch is None else bad | bad_batch
            if not scaled:
                self.optimizer.found_inf = skip.float()
            self.precision.step(self.optimizer)
            self.guard.observe_on_device(bad)
            state.loss_sum = state.loss_sum + torch.where(skip, 0.0, loss.detach().float())
            state.loss_count = state.loss_count + (~skip).to(state.loss_count.dtype)
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

    def _bad_batch(self) -> torch.Tensor | None:
        """Device mode: whether a batch of this step failed its check (a device bool), or None; consumed here."""
        if self.batch_check is None or self.batch_check.step_bad is None:
            return None
        bad, self.batch_check.step_bad = self.batch_check.step_bad, None
        return bad

    def state_dict(self) -> dict[str, Any]:
        norm = self.last_grad_norm
        state: dict[str, Any] = {"last_grad_norm": norm.detach().cpu() if norm is not None else None}
        if self.accumulate > 1:
            state["window"] = self.window.state_dict(self.parameters)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_grad_norm = state["last_grad_norm"]
        if self.accumulate > 1:
            self.window.load_state_dict(state.get("window"), self.parameters)


class GradientWindow:
    """The batches of one optimizer step under ``accumulate_grad_batches``: how many so far, of how many, their loss.

    Inside a window the summed gradients live in the parameters' ``.grad``; a checkpoint taken
    there (on a signal) keeps them, so that resuming finishes the same window exactly.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.size = 1
        self.loss: torch.Tensor | None = None

    def add(self, part: torch.Tensor) -> None:
        self.loss = part if self.loss is None else self.loss + part
        self.batches += 1

    def close(self) -> torch.Tensor:
        """The window's loss (the mean of its batches'), and a fresh window."""
        loss = self.loss
        self.restart()
        return loss

    def restart(self) -> None:
        self.batches, self.loss = 0, None

    def state_dict(self, parameters: list[nn.Parameter]) -> dict[str, Any]:
        inside = self.batches > 0
        return {
            "batches": self.batches,
            "size": self.size,
            "loss": self.loss.detach().cpu() if inside else None,
            "grads": [p.grad.detach().cpu() if p.grad is not None else None for p in parameters] if inside else None,
        }

    def load_state_dict(self, state: dict[str, Any] | None, parameters: list[nn.Parameter]) -> None:
        self.restart()
        if not state or not state["batches"]:
            return
        self.batches, self.size = state["batches"], state["size"]
        device = parameters[0].device
        self.loss = state["loss"].to(device)
        for parameter, grad in zip(parameters, state["grads"]):
            parameter.grad = grad.to(parameter.device) if grad is not None else None


def loss_of(out: Any, name: str = "the step") -> torch.Tensor:
    """The loss a step returned: a scalar tensor, alone or as ``{"loss": tensor}``.

    Args:
        out: What the step returned.
        name: The step, as the error names it (``train_step`` when the first batch is probed).

    Raises:
        DataError: anything else, saying what was returned.

    Example:
        >>> loss_of({"loss": torch.tensor(0.5)})
        tensor(0.5000)
    """
    if isinstance(out, dict) and "loss" not in out:
        raise DataError(
            f"{name} returned a mapping with keys {sorted(map(str, out))}: expected a scalar loss tensor, "
            "either alone or as {'loss': tensor}."
        )
    loss = out["loss"] if isinstance(out, dict) else out
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        hint = " (reduce it, e.g. loss.mean())" if isinstance(loss, torch.Tensor) else ""
        raise DataError(
            f"{name} returned {batches.describe(loss)} as its loss: expected a scalar tensor{hint}, "
            "either alone or as {'loss': tensor}."
        )
    return loss
