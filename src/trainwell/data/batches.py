"""What a batch is, and how it reaches the model.

A batch is an ``(inputs, targets)`` pair (tuple or list) or a mapping with ``"inputs"`` and
``"targets"``. ``inputs`` is a tensor, a tuple/list of tensors (passed as positional
arguments), or a mapping (passed as keyword arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trainwell.exceptions import DataError


def split_batch(batch: Any, source: str = "train_loader") -> tuple[Any, Any]:
    """Return ``(inputs, targets)`` from one batch, or say clearly why the batch is not one.

    Raises:
        DataError: naming ``source`` and describing what was received instead.
    """
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping) and "inputs" in batch and "targets" in batch:
        return batch["inputs"], batch["targets"]
    raise DataError(
        f"{source} yielded a batch that is {describe(batch)}: expected (inputs, targets), a pair "
        "such as a DataLoader over TensorDataset(x, y) yields, or a dict with 'inputs' and 'targets'."
    )


def describe(value: Any) -> str:
    """A short description of a batch-like value for error messages."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items ({', '.join(type(v).__name__ for v in value[:4])})"
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(map(str, value))}"
    return f"a {type(value).__name__}"


def move_to(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``value`` with every tensor inside it moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=non_blocking)
    if isinstance(value, (tuple, list)):
        return type(value)(move_to(item, device, non_blocking) for item in value)
    if isinstance(value, Mapping):
        return {key: move_to(item, device, non_blocking) for key, item in value.items()}
    return value


def forward(model: nn.Module, inputs: Any) -> Any:
    """Call ``model`` on ``inputs``: a tensor as is, a tuple/list unpacked, a mapping as keywords."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(inputs)


def count_samples(inputs: Any) -> int:
    """The number of samples in ``inputs`` (the leading size of its first tensor)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0] if inputs.dim() else 1
    if isinstance(inputs, (tuple, list)) and inputs:
        return count_samples(inputs[0])
    if isinstance(inputs, Mapping) and inputs:
        return count_samples(next(iter(inputs.values())))
    return len(inputs)


def channels_last(inputs: Any) -> Any:
    """4-D image tensors in ``inputs`` in channels-last memory layout (other values unchanged)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 else inputs
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(channels_last(item) for item in inputs)
    if isinstance(inputs, Mapping):
        return {key: channels_last(item) for key, item in inputs.items()}
    return inputs


def sample_shapes(inputs: Any) -> Any:
    """The shape of one sample of ``inputs`` (each tensor's shape without its leading batch size), for comparing batches.

    Example:
        >>> sample_shapes((torch.zeros(8, 3, 5), {"mask": torch.zeros(8, 5)}))
        ((3, 5), {'mask': (5,)})
    """
    if isinstance(inputs, torch.Tensor):
        return tuple(inputs.shape[1:])
    if isinstance(inputs, (tuple, list)):
        return tuple(sample_shapes(item) for item in inputs)
    if isinstance(inputs, Mapping):
        return {key: sample_shapes(item) for key, item in inputs.items()}
    return None
