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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from trainwell.data import batches
from trainwell.exceptions import OutOfMemoryError

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer

logger = logging.getLogger("trainwell")


class MicroBatching:
    """How many micro-batches each training batch is split into (1 until memory runs out).

    Example:
        >>> MicroBatching().chunks
        1
    """

    def __init__(self) -> None:
        self.chunks = 1

    def step(self, trainer: Trainer, inputs: Any, targets: Any) -> torch.Tensor:
        """One optimizer step over the batch, as ``chunks`` micro-batches with accumulated gradients.

        Returns:
            The batch's loss (the size-weighted mean of the micro-batch losses), detached.
        """
        from trainwell.distributed.session import accumulating
        from trainwell.loop.trainer import _loss_of

        total = batches.count_samples(inputs)
        loss_sum = None
        parts = list(zip(split(inputs, self.chunks), split(targets, self.chunks)))
        for index, (part_inputs, part_targets) in enumerate(parts):
            weight = batches.count_samples(part_inputs) / total
            # Under DDP, gradients are averaged across processes once, with the last micro-batch's backward.
            with accumulating(trainer, last=index == len(parts) - 1):
                with trainer.precision.autocast():
                    loss = _loss_of(trainer.train_step((part_inputs, part_targets)))
                trainer.precision.backward(loss * weight)
            part = loss.detach().float() * weight
            loss_sum = part if loss_sum is None else loss_sum + part
            del loss
        trainer._backward_and_step(loss_sum, backward=False)
        return loss_sum

    def recover(self, trainer: Trainer, inputs: Any, targets: Any) -> torch.Tensor:
        """Retry a step that ran out of memory with twice as many micro-batches, until it fits.

        Raises:
            OutOfMemoryError: micro-batches of a single sample do not fit either.
        """
        total = batches.count_samples(inputs)
        while True:
            free_memory(trainer.optimizer, trainer.device)
            if self.chunks >= total:
                raise OutOfMemoryError(
                    _single_sample_message(
                        trainer.device, inputs, f"with the batch of {total} split into micro-batches of 1 sample"
                    )
                )
            self.chunks = min(self.chunks * 2, total)
            trainer.record_event(
                "oom_split",
                logging.WARNING,
                f"Out of memory on {trainer.device} at step {trainer.global_step}: retrying the batch of {total} as "
                f"{self.chunks} micro-batches with gradient accumulation (same effective batch).",
                micro_batches=self.chunks,
                batch_size=total,
            )
            try:
                return self.step(trainer, inputs, targets)
            except torch.OutOfMemoryError:
                # Leave the except block first, so that the failed attempt's tensors can be freed.
                pass


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
