"""Checks before training: the model, the loaders, and the first batch against the model.

Everything here runs once, before any parameter changes, so that bad input fails with a clear
message instead of deep inside the loop, and costs nothing per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.exceptions import DataError, ModelError
from trainwell.loop.tasks import infer_task
from trainwell.models.summarize import summary
from trainwell.reliability.oom import forward_fitting, free_memory, split

if TYPE_CHECKING:
    from trainwell.loop.precision import Precision
    from trainwell.loop.tasks import Task


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


@dataclass
class FirstBatch:
    """What the first batch of a loader told.

    Attributes:
        samples: Its sample count (the loader's batch size).
        inputs: Its inputs, on the device (for the model summary).
        task: The task decided from it (None for a custom step whose model returns no tensor).
        target_stats: For regression, the mean and standard deviation of its targets (the doctor
            reads their scale); None otherwise.
    """

    samples: int
    inputs: Any
    task: Task | None
    target_stats: dict[str, float] | None = None


def probe(
    module: nn.Module,
    loader: Iterable[Any],
    source: str,
    *,
    device: torch.device,
    precision: Precision,
    task: Task | None,
    requested_task: str,
    loss_fn: Any,
    custom_step: bool,
) -> FirstBatch:
    """Check the first batch of ``loader`` against the model, and decide the task from it.

    The forward pass runs in eval mode without gradients, so no statistics or parameters change,
    and under ``fork_rng``: a DataLoader draws its shuffling seed from torch's global RNG when
    iterated, and the probe must not change what training then sees.

    Args:
        module: The model.
        loader: The loader to take the first batch of.
        source: The loader's name, for messages.
        device: Where the model is.
        precision: The run's precision (the forward pass runs under its autocast).
        task: The task decided already (from the training batches), which validation batches
            are checked against; None decides it here.
        requested_task: The config's ``task``.
        loss_fn: The config's ``loss_fn``.
        custom_step: Whether the trainer's ``train_step`` is overridden (then outputs that are not
            a tensor are the step's business).

    Returns:
        A :class:`FirstBatch`.

    Raises:
        DataError: no batches, not ``(inputs, targets)``, the model fails on the inputs, or the
            targets do not fit the outputs.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            first = next(iter(loader))
        except StopIteration:
            raise DataError(
                f"{source} is empty: it yielded no batches. Pass a loader with at least one batch."
            ) from None
    inputs, targets = batches.split_batch(first, source)
    inputs, targets = batches.move_to((inputs, targets), device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), precision.autocast():
            outputs, targets = forward_fitting(module, inputs, targets)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DataError(
            f"the model failed on the first batch of {source} (inputs: {batches.describe(inputs)}): {error}. "
            "Check that the model's input size matches the data."
        ) from error
    finally:
        module.train(was_training)
    if not (custom_step and not isinstance(outputs, torch.Tensor)):
        # The validation batches are checked against the task the training batches decided.
        decided = infer_task(task.name if task is not None else requested_task, loss_fn, outputs, targets, source)
        task = task or decided
    stats = None
    if task is not None and task.name == "regression" and isinstance(targets, torch.Tensor) and targets.numel() > 1:
        values = targets.detach().float()
        stats = {"mean": float(values.mean()), "std": float(values.std())}
    return FirstBatch(batches.count_samples(inputs), inputs, task, stats)


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
