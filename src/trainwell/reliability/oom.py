"""Out-of-memory recovery: split a batch that does not fit into micro-batches, keeping the step the same.

When a training step raises ``torch.OutOfMemoryError`` (CUDA's out-of-memory error), the
failed step's tensors are released, the cached memory is returned to the device, and the same
batch is retried as 2, then 4, 8, ... micro-batches whose gradients accumulate before one
optimizer step. Each micro-batch's loss is weighted by its share of the batch, so for a loss that
is a mean over samples (every built-in loss) the gradient, the clipping and the update equal the
whole batch's within float rounding: the effective batch size and the result stay the same. Later
steps keep the split that worked. Layers that compute statistics over the batch (BatchNorm) see
the micro-batches instead, and dropout draws its masks per micro-batch.

When even micro-batches of one sample run out of memory, training stops with
:class:`trainwell.exceptions.OutOfMemoryError` and what to change.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch

from trainwell.data import batches
from trainwell.exceptions import OutOfMemoryError

logger = logging.getLogger("trainwell")


class MicroBatching:
    """How many micro-batches each training batch is split into (1 until memory runs out), and the split itself.

    The step's mechanics come from the caller: ``accumulate(inputs, targets, weight, last)`` runs
    one micro-batch's forward and backward with its loss weighted by ``weight`` (gradients
    synchronised across processes only with the ``last``) and returns the weighted loss, detached;
    ``finish(loss)`` clips, judges and steps on the accumulated gradients.

    Example:
        >>> splitting = MicroBatching()
        >>> splitting.chunks = 2
        >>> seen = []
        >>> loss = splitting.step(
        ...     torch.arange(5.0), torch.arange(5.0),
        ...     accumulate=lambda x, y, weight, last: seen.append((len(x), weight, last)) or x.mean() * weight,
        ...     finish=lambda loss: None,
        ... )
        >>> seen, float(loss)
        ([(3, 0.6, False), (2, 0.4, True)], 2.0)
    """

    def __init__(self) -> None:
        self.chunks = 1

    def step(
        self,
        inputs: Any,
        targets: Any,
        accumulate: Callable[[Any, Any, float, bool], torch.Tensor],
        finish: Callable[[torch.Tensor], None],
    ) -> torch.Tensor:
        """One optimizer step over the batch, as ``chunks`` micro-batches with accumulated gradients.

        Returns:
            The batch's loss (the size-weighted mean of the micro-batch losses), detached.
        """
        total = batches.count_samples(inputs)
        loss_sum = None
        parts = list(zip(split(inputs, self.chunks), split(targets, self.chunks)))
        for index, (part_inputs, part_targets) in enumerate(parts):
            weight = batches.count_samples(part_inputs) / total
            part = accumulate(part_inputs, part_targets, weight, index == len(parts) - 1)
            loss_sum = part if loss_sum is None else loss_sum + part
        finish(loss_sum)
        return loss_sum

    def recover(
        self,
        inputs: Any,
        targets: Any,
        accumulate: Callable[[Any, Any, float, bool], torch.Tensor],
        finish: Callable[[torch.Tensor], None],
        *,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        step: int,
        record_event: Callable[..., None],
    ) -> torch.Tensor:
        """Retry a step that ran out of memory with twice as many micro-batches, until it fits.

        Args:
            inputs, targets: The batch that did not fit.
            accumulate, finish: As for :meth:`step`.
            optimizer: Its gradients are dropped before each attempt.
            device: Where training runs (its cached memory is released).
            step: The optimizer step, for the event.
            record_event: Records each split (``oom_split``), as ``TrainState.record_event``.

        Raises:
            OutOfMemoryError: micro-batches of a single sample do not fit either.
        """
        total = batches.count_samples(inputs)
        while True:
            free_memory(optimizer, device)
            if self.chunks >= total:
                raise OutOfMemoryError(
                    _single_sample_message(
                        device, inputs, f"with the batch of {total} split into micro-batches of 1 sample"
                    )
                )
            self.chunks = min(self.chunks * 2, total)
            record_event(
                "oom_split",
                logging.WARNING,
                f"Out of memory on {device} at step {step}: retrying the batch of {total} as "
                f"{self.chunks} micro-batches with gradient accumulation (same effective batch).",
                micro_batches=self.chunks,
                batch_size=total,
            )
            try:
                return self.step(inputs, targets, accumulate, finish)
            except torch.OutOfMemoryError:
                # Leave the except block first, so that the failed attempt's tensors can be freed.
                pass

    def state_dict(self) -> dict[str, Any]:
        return {"chunks": self.chunks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.chunks = state["chunks"]


def free_memory(optimizer: torch.optim.Optimizer | None, device: torch.device | None) -> None:
    """Drop the gradients and cached blocks a failed step left behind."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if device is not None and device.type == "cuda":
        torch.cuda.empty_cache()


def forward_fitting(model: torch.nn.Module, inputs: Any, targets: Any) -> tuple[Any, Any]:
    """The model's outputs on a batch (for the Trainer's first-batch checks) and the targets they belong to.

    When the whole batch does not fit, the first sample alone is used: training will split the batch.

    Raises:
        OutOfMemoryError: a single sample does not fit either.
    """
    try:
        return batches.forward(model, inputs), targets
    except torch.OutOfMemoryError:
        pass
    device = next((p.device for p in model.parameters()), None)
    free_memory(None, device)
    count = batches.count_samples(inputs)
    try:
        return batches.forward(model, split(inputs, count)[0]), split(targets, count)[0]
    except torch.OutOfMemoryError:
        pass
    free_memory(None, device)
    raise OutOfMemoryError(_single_sample_message(device, inputs, "in a forward pass without gradients"))


def _single_sample_message(device: Any, inputs: Any, how: str) -> str:
    return (
        f"a single training sample does not fit in memory on {device}: it ran out of memory {how} "
        f"(inputs: {batches.describe(inputs)}). Use a smaller model or shorter inputs, precision='bf16' "
        "(or 'fp16' on older GPUs), or a device with more memory."
    )


def split(value: Any, chunks: int) -> list[Any]:
    """``value`` cut into ``chunks`` nearly equal pieces along the sample dimension (tuples and dicts recursively).

    Example:
        >>> [piece.tolist() for piece in split(torch.arange(5), 2)]
        [[0, 1, 2], [3, 4]]
    """
    if isinstance(value, torch.Tensor):
        return list(torch.tensor_split(value, chunks)) if value.dim() else [value] * chunks
    if isinstance(value, (tuple, list)):
        parts = [split(item, chunks) for item in value]
        return [type(value)(part[i] for part in parts) for i in range(chunks)]
    if isinstance(value, Mapping):
        parts = {key: split(item, chunks) for key, item in value.items()}
        return [{key: part[i] for key, part in parts.items()} for i in range(chunks)]
    return [value] * chunks
