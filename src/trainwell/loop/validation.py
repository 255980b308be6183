"""One evaluation pass over held-out batches, the same for validation during training and for ``trainwell.evaluate``.

The model runs in eval mode without gradients (its mode is restored afterwards). Losses are
weighted by batch size, so the result does not depend on how the data is batched; the task's
metrics are summed on the device and every prediction is kept there (:mod:`trainwell.loop.metrics`),
so the pass adds no per-batch host synchronisation: the numbers are read once, at its end. Under
torchrun the sums and predictions of every process are combined, so each metric covers the whole
validation set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
        details: The pass's predictions and targets (per-class scores, confusion matrix), or None
            without a task.
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
        session: Under torchrun, the process's session: sums and predictions of every process.
        target_scaling: For regression on standardised targets, their
            :class:`~trainwell.data.targets.TargetScaling`: the loss stays on the standard scale
            the model learns, while the metrics (MAE, RMSE, R²) are computed in the targets' own units.

    Returns:
        A :class:`PassResult`.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    samples = 0
    sums: dict[str, torch.Tensor] = {}
    decided = task()
    details = ValidationMetrics(decided) if decided is not None else None
    try:
        with torch.no_grad():
            for batch in loader:
                inputs, targets = batches.split_batch(batch, source)
                count = batches.count_samples(inputs)
                batch = batches.move_to((inputs, targets), device, non_blocking=True)
                with autocast():
                    out = step(batch)
                loss_sum += loss_of(out).detach().double() * count
                samples += count
                decided = decided or task()
                if decided is None or not isinstance(out, dict) or "outputs" not in out:
                    continue
                details = details or ValidationMetrics(decided)
                outputs, targets = out["outputs"], out["targets"]
                if target_scaling is not None and decided.name == "regression":
                    targets = decided.prepare_targets(outputs, targets)
                    outputs, targets = target_scaling.unscale(outputs.float()), target_scaling.unscale(targets.float())
                for name, value in decided.metric_sums(outputs, targets).items():
                    sums[name] = sums[name] + value if name in sums else value
                details.update(outputs, targets)
    finally:
        model.train(was_training)
    names = list(sums)
    totals = torch.stack([loss_sum, *(sums[name].double() for name in names)])
    if session is not None:
        totals, samples = session.reduce_validation(totals, samples, details)
    values = totals.tolist()
    metrics = {"val_loss": values[0] / max(samples, 1)}
    if decided is not None and names:
        metrics.update(decided.summarize(dict(zip(names, values[1:]))))
        metrics.update(details.compute())
    return PassResult(metrics, details, samples)
