"""Checks before training: the model, the loaders, and the first batch against the model.

Everything here runs once, before any parameter changes, so that bad input fails with a clear
message instead of deep inside the loop, and costs nothing per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.exceptions import DataError, ModelError
from trainwell.models.summarize import summary
from trainwell.reliability.oom import forward_fitting, free_memory, split
from trainwell.loop.tasks import infer_task

if TYPE_CHECKING:
    from trainwell.loop.trainer import Trainer


def check_inputs(model: Any, train_loader: Any, val_loader: Any) -> None:
    """Refuse a model that cannot be trained and loaders that cannot feed it.

    Raises:
        ModelError: ``model`` is not an ``nn.Module`` instance, or has no trainable parameters.
        DataError: a loader is None, not iterable, a one-shot iterator, or empty.
    """
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model={_short_repr(model)} is a {type(model).__name__}: expected a torch.nn.Module "
            "(an instance, e.g. MyNet(), not the class)."
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"model={type(model).__name__} has no trainable parameters: every parameter is frozen or "
            "there are none. Unfreeze some (requires_grad=True) or add layers with parameters."
        )
    check_loader(train_loader, "train_loader")
    if val_loader is not None:
        check_loader(val_loader, "val_loader")


def check_loader(loader: Any, name: str) -> None:
    """Refuse what cannot serve batches every epoch; ``name`` is the argument, for the message."""
    if loader is None:
        raise DataError(f"{name}=None: expected an iterable of (inputs, targets) batches, such as a DataLoader.")
    if isinstance(loader, (torch.Tensor, str, bytes)) or not isinstance(loader, Iterable):
        raise DataError(
            f"{name} is {batches.describe(loader)}: expected an iterable of (inputs, targets) batches, "
            "such as DataLoader(TensorDataset(x, y)) or trainwell.data.TensorLoader(x, y)."
        )
    if isinstance(loader, Iterator):
        raise DataError(
            f"{name} is a one-shot iterator ({type(loader).__name__}), which would be exhausted after the first "
            "epoch: pass a re-iterable such as a list of batches or a DataLoader."
        )
    if loader_length(loader) == 0:
        raise DataError(f"{name} is empty: len({name}) == 0. Pass a loader with at least one batch.")


def loader_length(loader: Any) -> int | None:
    """``len(loader)``, or None for loaders without a length (streams)."""
    try:
        return len(loader)
    except TypeError:
        return None


def probe(trainer: Trainer, loader: Iterable[Any], source: str) -> tuple[int, Any]:
    """Check the first batch of ``loader`` against the model, and decide the task from it.

    The forward pass runs in eval mode without gradients, so no statistics or parameters change,
    and under ``fork_rng``: a DataLoader draws its shuffling seed from torch's global RNG when
    iterated, and the probe must not change what training then sees.

    Returns:
        The batch's sample count and its inputs (on the device).

    Raises:
        DataError: no batches, not ``(inputs, targets)``, the model fails on the inputs, or the
            targets do not fit the outputs.
    """
    with torch.random.fork_rng(devices=trainer._rng_devices):
        try:
            first = next(iter(loader))
        except StopIteration:
            raise DataError(f"{source} is empty: it yielded no batches. Pass a loader with at least one batch.") from None
    inputs, targets = batches.split_batch(first, source)
    inputs, targets = batches.move_to((inputs, targets), trainer.device)
    module = trainer.module
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), trainer.precision.autocast():
            outputs, targets = forward_fitting(module, inputs, targets)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DataError(
            f"the model failed on the first batch of {source} (inputs: {batches.describe(inputs)}): {error}. "
            "Check that the model's input size matches the data."
        ) from error
    finally:
        module.train(was_training)
    from trainwell.loop.trainer import Trainer

    custom_step = type(trainer).train_step is not Trainer.train_step
    if not (custom_step and not isinstance(outputs, torch.Tensor)):
        # The validation batches are checked against the task the training batches decided.
        requested = trainer.task.name if trainer.task is not None else trainer.config.task
        task = infer_task(requested, trainer.config.loss_fn, outputs, targets, source)
        if trainer.task is None:
            trainer.task = task
    return batches.count_samples(inputs), inputs


def summarize(module: nn.Module, inputs: Any, device: torch.device) -> str:
    """The model summary on the first batch, or on its first sample when the batch does not fit."""
    try:
        return summary(module, inputs)
    except torch.OutOfMemoryError:
        pass
    free_memory(None, device)
    return summary(module, split(inputs, batches.count_samples(inputs))[0])


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
