"""``Trainer.predict``: the model's outputs over a loader, gathered on the CPU.

The pass runs as validation does (eval mode, no gradients, the run's autocast; the model's mode
is restored afterwards); each batch's outputs are moved to the CPU as they come, so a long pass
does not fill the device's memory. The step is the trainer's :meth:`~trainwell.Trainer.predict_step`,
so a model called its own way (a recurrent state) predicts as it trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from trainwell.data import batches
from trainwell.exceptions import ModelError
from trainwell.loop.precision import Precision
from trainwell.loop.preflight import check_loader
from trainwell.system import resolve_device

if TYPE_CHECKING:
    from torch import nn


def prediction_pass(trainer: Any, loader: Iterable[Any], model: nn.Module | None = None) -> Any:
    """Run ``trainer.predict_step`` on every batch of ``loader``; return the outputs on the CPU.

    Args:
        trainer: The trainer (its model after ``fit``, device, precision and ``predict_step``).
        loader: Batches as in training, ``(inputs, targets)`` (the targets are not used), or of
            inputs alone: a tensor, a 1-tuple (``DataLoader(TensorDataset(x))``), or a mapping with
            ``"inputs"``.
        model: The module to predict with (moved to the trainer's device, and the trainer's model
            from then on); None is the one ``fit`` trained.

    Returns:
        The outputs concatenated along the batch dimension: a tensor, or a tuple or dict of tensors
        when the step returns those; a list of each batch's outputs when they do not concatenate
        (other types, or shapes that differ beyond the batch dimension).

    Raises:
        ModelError: no model: ``fit`` was not called and none was given.
        DataError: ``loader`` is not a re-iterable of batches.

    Example:
        >>> from trainwell import Trainer
        >>> trainer = Trainer(device="cpu")
        >>> trainer.predict([torch.ones(2, 3)], model=torch.nn.Linear(3, 1, bias=False).requires_grad_(False)).shape
        torch.Size([2, 1])
    """
    check_loader(loader, "loader")
    device = trainer.device or resolve_device(trainer.config.device)
    if model is not None:
        trainer.device = device
        trainer.module = trainer.model = model.to(device)
    if trainer.model is None:
        raise ModelError(
            "Trainer.predict has no model: call fit(model, ...) first, or pass one: "
            "trainer.predict(loader, model=model)."
        )
    precision = trainer.precision or Precision(trainer.config.precision, device)
    module = trainer.model
    was_training = module.training
    module.eval()
    outputs = []
    try:
        with torch.no_grad():
            for batch in loader:
                inputs = batches.move_to(_inputs_of(batch), device, non_blocking=True)
                with precision.autocast():
                    out = trainer.predict_step(inputs)
                outputs.append(batches.move_to(_detached(out), torch.device("cpu")))
    finally:
        module.train(was_training)
    return concatenated(outputs)


def _inputs_of(batch: Any) -> Any:
    """The inputs of a batch: the first of a pair, the one of a 1-tuple, ``batch["inputs"]``, else the batch."""
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[0]
    if isinstance(batch, Mapping) and "inputs" in batch:
        return batch["inputs"]
    return batch


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detached(item) for item in value)
    if isinstance(value, Mapping):
        return {key: _detached(item) for key, item in value.items()}
    return value


def concatenated(parts: list[Any]) -> Any:
    """Batches of outputs joined along dimension 0 (tensors, tuples or dicts of them), else the list as it is.

    Example:
        >>> concatenated([torch.zeros(2, 3), torch.ones(1, 3)]).shape
        torch.Size([3, 3])
        >>> concatenated([{"a": torch.zeros(2)}, {"a": torch.ones(1)}])["a"].tolist()
        [0.0, 0.0, 1.0]
    """
    if not parts:
        return parts
    first = parts[0]
    try:
        if isinstance(first, torch.Tensor) and first.dim() > 0:
            return torch.cat(parts)
        if isinstance(first, tuple) and all(isinstance(p, tuple) and len(p) == len(first) for p in parts):
            joined = [concatenated([p[i] for p in parts]) for i in range(len(first))]
            if all(isinstance(item, torch.Tensor) for item in joined):
                return tuple(joined)
        if isinstance(first, Mapping) and all(isinstance(p, Mapping) and p.keys() == first.keys() for p in parts):
            joined = {key: concatenated([p[key] for p in parts]) for key in first}
            if all(isinstance(item, torch.Tensor) for item in joined.values()):
                return joined
    except (RuntimeError, TypeError):
        pass  # shapes that differ beyond the batch dimension: each batch's outputs as they are
    return parts
