"""Checks before training: the model, the loaders, and the first batch against the model, or against the step.

Everything here runs once, before any parameter changes, so that bad input fails with a clear
message instead of deep inside the loop, and costs nothing per step.

With the built-in step, the model's outputs on the first batch are checked against its targets
(and decide the task). A step of the user's own (``train_step``/``eval_step`` overridden) makes
the model's signature and outputs the step's business: the step itself runs once on the first
batch, and only what it returns is checked (a scalar loss that depends on the parameters; for
``eval_step``, ``{"loss", "outputs", "targets"}`` or the loss alone). That run leaves no trace:
the model's mode and buffers, the trainer's attributes and the random state are put back.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from trainwell.data import batches
from trainwell.exceptions import DataError, ModelError
from trainwell.loop.step import loss_of
from trainwell.loop.tasks import infer_task
from trainwell.models.summarize import summary
from trainwell.reliability.loader_position import peek_first_batch
from trainwell.reliability.oom import forward_fitting, free_memory, split

if TYPE_CHECKING:
    from trainwell.loop.precision import Precision
    from trainwell.loop.tasks import Task


def check_inputs(model: Any, train_loader: Any, val_loader: Any) -> None:
    """Refuse a model that cannot be trained and loaders that cannot feed it.

    Raises:
        ModelError: ``model`` is not an ``nn.Module`` instance, has no trainable parameters, or has
            parameters on the meta device.
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
    refuse_meta(model)
    check_loader(train_loader, "train_loader")
    if val_loader is not None:
        check_loader(val_loader, "val_loader")


def refuse_meta(model: nn.Module, argument: str = "model") -> None:
    """Refuse a model whose parameters or buffers are on the meta device: shapes without values.

    Raises:
        ModelError: naming the first such tensors and how to give them values.
    """
    meta = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if meta:
        shown = ", ".join(meta[:3]) + (f" and {len(meta) - 3} more" if len(meta) > 3 else "")
        raise ModelError(
            f"{argument}={type(model).__name__} has tensors on the meta device ({shown}): they have shapes but no "
            "values (the model was built under torch.device('meta') or an empty-weights context). Give them values "
            "first: model.to_empty(device='cpu') and initialise them, or load a state dict with "
            "model.load_state_dict(state, assign=True)."
        )


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
        targets: Its targets, on the device.
        target_stats: For regression, the mean and standard deviation of its targets (the doctor
            reads their scale); None otherwise.
    """

    samples: int
    inputs: Any
    task: Task | None
    targets: Any = None
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

    Returns:
        A :class:`FirstBatch`.

    Raises:
        DataError: no batches, not ``(inputs, targets)``, the model fails on the inputs, or the
            targets do not fit the outputs.
    """
    inputs, targets = first_batch(loader, source, device)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), precision.autocast():
            outputs, fitted = forward_fitting(module, inputs, targets)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DataError(
            f"the model failed on the first batch of {source} (inputs: {batches.describe(inputs)}): {error}. "
            "Check that the model's input size matches the data."
        ) from error
    finally:
        module.train(was_training)
    # The validation batches are checked against the task the training batches decided.
    decided = infer_task(task.name if task is not None else requested_task, loss_fn, outputs, fitted, source)
    task = task or decided
    stats = None
    if task is not None and task.name == "regression" and isinstance(targets, torch.Tensor) and targets.numel() > 1:
        values = targets.detach().float()
        stats = {"mean": float(values.mean()), "std": float(values.std())}
    return FirstBatch(batches.count_samples(inputs), inputs, task, targets, stats)


def first_of(loader: Iterable[Any], device: torch.device, task: Task | None = None) -> FirstBatch:
    """The first training batch as it is, unchecked: for a step of the user's, checked once the run's parts exist."""
    inputs, targets = first_batch(loader, "train_loader", device)
    return FirstBatch(batches.count_samples(inputs), inputs, task, targets)


def first_batch(loader: Iterable[Any], source: str, device: torch.device) -> tuple[Any, Any]:
    """The first ``(inputs, targets)`` of ``loader``, on ``device``, drawn without changing the random state.

    A DataLoader draws its shuffling seed from torch's global RNG when iterated: the probe must not
    change what training then sees.

    Raises:
        DataError: no batches, or not ``(inputs, targets)``.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            # In this process, leaving a loader's own generator as it was (reliability/loader_position.py).
            first = peek_first_batch(loader)
        except StopIteration:
            raise DataError(
                f"{source} is empty: it yielded no batches. Pass a loader with at least one batch."
            ) from None
    inputs, targets = batches.split_batch(first, source)
    return batches.move_to((inputs, targets), device)


def check_train_step(
    step: Callable[[Any], Any],
    first: FirstBatch,
    *,
    module: nn.Module,
    owner: Any,
    device: torch.device,
    precision: Precision,
) -> str:
    """Run a ``train_step`` of the user's on the first training batch and check what it returns.

    It runs once, as in training (train mode, with gradients, under the precision's autocast,
    with the run's parts built), with no backward and no update, and leaves no trace
    (:func:`leaving_no_trace`). A batch that runs out of memory is not checked here: training
    splits it.

    Returns:
        The model summary, taken from that run: the shapes of the step's calls to the model,
        whatever its signature.

    Raises:
        DataError: the step fails on the batch, or returns something other than a scalar loss
            that depends on the model's trainable parameters.
    """
    returned: list[Any] = []

    def run() -> None:
        with precision.autocast():
            returned.append(_run_step(step, "train_step", first.inputs, first.targets))

    with leaving_no_trace(module, owner, device, training=True):
        try:
            table = summary(module, first.inputs, run=run)
        except torch.OutOfMemoryError:
            free_memory(None, device)
            return summary(module, first.inputs, run=lambda: None)  # the layers, without shapes
        _check_loss(returned[0], "train_step", needs_grad=torch.is_grad_enabled())
    return table


def check_eval_step(
    step: Callable[[Any], Any],
    loader: Iterable[Any],
    *,
    module: nn.Module,
    owner: Any,
    device: torch.device,
    precision: Precision,
    task: Task | None,
    requested_task: str,
    loss_fn: Any,
) -> Task | None:
    """Run an ``eval_step`` of the user's on the first validation batch and check what it returns.

    It runs as in validation (eval mode, no gradients, autocast) and leaves no trace. Returned
    ``outputs`` and ``targets`` are what the task's metrics are computed on: they must fit the task
    decided from the training batches, or decide it.

    Returns:
        The task (None when the step returns the loss alone and no task was decided).

    Raises:
        DataError: the step fails on the batch, returns no scalar loss, ``outputs`` without
            ``targets`` (or the reverse), or outputs and targets that fit no task.
    """
    inputs, targets = first_batch(loader, "val_loader", device)
    with leaving_no_trace(module, owner, device, training=False), torch.no_grad(), precision.autocast():
        out = _run_step(step, "eval_step", inputs, targets)
    _check_loss(out, "eval_step", needs_grad=False)
    if not isinstance(out, dict) or ("outputs" not in out and "targets" not in out):
        return task
    if "outputs" not in out or "targets" not in out:
        raise DataError(
            f"eval_step returned a mapping with keys {sorted(map(str, out))}: expected 'outputs' and 'targets' "
            "together (the task's metrics are computed on them), or neither (val_loss alone)."
        )
    try:
        decided = infer_task(
            task.name if task is not None else requested_task, loss_fn, out["outputs"], out["targets"], "val_loader"
        )
    except DataError as error:
        raise DataError(
            f"eval_step returned outputs {batches.describe(out['outputs'])} "
            f"and targets {batches.describe(out['targets'])}, "
            f"on which no metric can be computed: {error} Return outputs (N, C) of class scores with targets (N,) "
            "(a sequence model: outputs.reshape(-1, C), targets.reshape(-1)), values (N, K) with targets (N, K), or "
            "{'loss': loss} alone for val_loss only."
        ) from error
    return task or decided


@contextlib.contextmanager
def leaving_no_trace(module: nn.Module, owner: Any, device: torch.device, training: bool) -> Iterator[None]:
    """Run a user's step once before training without changing anything training then sees.

    ``module`` runs in train or eval mode as asked; afterwards its mode, buffers (BatchNorm
    statistics), the random generators, and the attributes of ``owner`` (the trainer: state a step
    keeps there, such as a recurrent hidden state) are what they were: rebound names, tensors
    changed in place, lists, dicts and sets (shallow copies), and the user's objects with
    ``state_dict``/``load_state_dict`` (their state). The gradients are cleared (set to None, as
    training starts from none), not restored. Other side effects of the step (a counter kept
    elsewhere, an event recorded, a file written) are the step's own.
    """
    attributes = dict(vars(owner))
    kept = {name: _kept(value) for name, value in attributes.items()}
    buffers = [(buffer, buffer.detach().clone()) for buffer in module.buffers()]
    was_training = module.training
    module.train(training)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        module.train(was_training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        module.zero_grad(set_to_none=True)
        vars(owner).clear()
        vars(owner).update(attributes)
        for name, saved in kept.items():
            _put_back(attributes[name], saved)


def _kept(value: Any) -> Any:
    """What :func:`leaving_no_trace` keeps of an attribute to put it back (None: the reference is enough)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (list, dict, set)):
        return copy.copy(value)
    # The run's own parts (torch's and trainwell's objects: model, optimizer, loop state) are not
    # touched by a step without backward and update; the user's stateful helpers are put back.
    if type(value).__module__.split(".")[0] in ("torch", "trainwell"):
        return None
    if callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None)):
        try:
            return copy.deepcopy(value.state_dict())
        except Exception:  # noqa: BLE001 - a state that cannot be copied is left to the step
            return None
    return None


def _put_back(value: Any, saved: Any) -> None:
    if saved is None:
        return
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            if value.shape == saved.shape:
                value.copy_(saved)
    elif isinstance(value, (list, dict, set)):
        value.clear()
        value.update(saved) if not isinstance(value, list) else value.extend(saved)
    else:
        value.load_state_dict(saved)


def _run_step(step: Callable[[Any], Any], name: str, inputs: Any, targets: Any) -> Any:
    source = "train_loader" if name == "train_step" else "val_loader"
    try:
        return step((inputs, targets))
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
        raise DataError(
            f"{name} failed on the first batch of {source} (inputs: {batches.describe(inputs)}, targets: "
            f"{batches.describe(targets)}) with {type(error).__name__}: {error}"
        ) from error


def _check_loss(out: Any, name: str, needs_grad: bool) -> None:
    """Refuse a step's result that is not a scalar loss (alone or as ``{"loss": tensor}``), or one without gradients."""
    loss = loss_of(out, name)
    if needs_grad and not loss.requires_grad:
        raise DataError(
            f"{name} returned a loss that does not depend on the model's trainable parameters (requires_grad=False): "
            "return the loss tensor computed from self.model's outputs, not loss.detach(), loss.item() or a "
            "tensor made under torch.no_grad()."
        )


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
