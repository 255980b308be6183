"""One evaluation pass over held-out batches, the same for validation during training and for ``trainwell.evaluate``.

The model runs in eval mode without gradients (its mode is restored afterwards). Losses are
weighted by batch size, so the result does not depend on how the data is batched; the chosen
metrics are counted on the device (:mod:`trainwell.loop.metrics`), so the pass adds no per-batch
host synchronisation: the numbers are read once, at its end. Under torchrun the sums of every
process are added up, so each metric covers the whole validation set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.loop.metrics import ValidationMetrics
from trainwell.loop.step import loss_of

if TYPE_CHECKING:
    from trainwell.distributed.session import Session
    from trainwell.loop.tasks import Task


@dataclass
class PassResult:
    """What one evaluation pass measured.

    Attributes:
        metrics: ``val_loss`` and the task's ``val_*`` metrics.
        details: The pass's counts (per-class scores, confusion matrix), or None without a task.
        samples: How many samples were evaluated (in every process together).
    """

    metrics: dict[str, float]
    details: ValidationMetrics | None
    samples: int


def evaluation_pass(
    model: nn.Module,
    loader: Iterable[Any],
    step: Callable[[Any], Any],
    *,
    task: Callable[[], Task | None],
    device: torch.device,
    source: str,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
    session: Session | None = None,
    metrics: Sequence[str] | None = None,
    target_scaling: Any = None,
) -> PassResult:
    """Run ``step`` over every batch of ``loader`` and measure the loss and the task's metrics.

    Args:
        model: The module ``step`` calls (put in eval mode for the pass).
        loader: ``(inputs, targets)`` batches (or dicts with ``inputs`` and ``targets``).
        step: ``step((inputs, targets))`` on the device returns ``{"loss", "outputs", "targets"}``
            (or the loss alone, then no task metrics are computed).
        task: The task whose metrics to compute, asked before the pass and after each batch (it may
            be decided on the first batch); None computes the loss only.
        device: Where the batches go.
        source: The loader's name, for messages about malformed batches.
        autocast: The precision's autocast context.
        session: Under torchrun, the process's session: the sums of every process.
        metrics: The metric names to compute (``TrainConfig.metrics``); None: the task's default set.
        target_scaling: For regression on standardised targets, their
            :class:`~trainwell.data.targets.TargetScaling`: the loss stays on the standard scale
            the model learns, while the metrics (MAE, RMSE, R²) are computed in the targets' own units.

    Returns:
        A :class:`PassResult`.

    Raises:
        ConfigError: a chosen metric does not fit the task.
    """
    was_training = model.training
    model.eval()
    sum_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    loss_sum = torch.zeros(1, dtype=sum_dtype, device=device)
    samples = 0
    decided = task()
    details = ValidationMetrics(decided, metrics, device) if decided is not None else None
    try:
        with torch.no_grad():
            for batch in loader:
                inputs, targets = batches.split_batch(batch, source)
                count = batches.count_samples(inputs)
                batch = batches.move_to((inputs, targets), device, non_blocking=True)
                with autocast():
                    out = step(batch)
                loss_sum += loss_of(out).detach().to(sum_dtype) * count
                samples += count
                decided = decided or task()
                if decided is None or not isinstance(out, dict) or "outputs" not in out:
                    continue
                details = details or ValidationMetrics(decided, metrics, device)
                outputs, targets = out["outputs"], out["targets"]
                if target_scaling is not None and decided.name == "regression":
                    targets = decided.prepare_targets(outputs, targets)
                    outputs, targets = target_scaling.unscale(outputs.float()), target_scaling.unscale(targets.float())
                details.update(outputs, targets)
    finally:
        model.train(was_training)
    totals = torch.cat([loss_sum, details.sums()]) if details is not None else loss_sum
    if session is not None:
        totals, samples = session.reduce_validation(totals, samples)
    totals = totals.cpu()  # the one read of the pass
    result = {"val_loss": totals[0].item() / max(samples, 1)}
    if details is not None:
        result.update(details.compute(totals[1:]))
    return PassResult(result, details, samples)


@contextlib.contextmanager
def on_plain_module(trainer: Any) -> Iterator[None]:
    """Under torchrun, a block in which ``trainer.model`` is the plain module with rank 0's buffers (BatchNorm
    statistics), as checkpoints hold them, and under FSDP its whole weights gathered: several processes validate
    it (:mod:`trainwell.distributed.session`). In one process, nothing changes."""
    if trainer.distributed is None:
        yield
        return
    wrapped, trainer.model = trainer.model, trainer.module
    try:
        with trainer.distributed.validating(trainer.module):
            yield
    finally:
        trainer.model = wrapped
