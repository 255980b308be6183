"""The LR finder: a short run with an exponentially rising learning rate, and the lr it suggests.

The range test (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017) trains for
a few dozen steps while the lr grows from ``start_lr`` to ``end_lr``, records the smoothed
loss at each lr, and stops once the loss diverges. The model, the optimizer (when one is passed
in) and the random number generators are restored afterwards, so the finder leaves no trace on
the training that follows.

The suggestion is the lr where the smoothed loss was lowest, divided by ``divisor`` (5 by
default). The loss is smoothed without lag (an exponential moving average run forwards, then
backwards), so the minimum sits where the raw losses put it; a one-way average would shift it
several-fold towards higher rates, since the lr grows by about 20% a step. The steps where the
loss diverges stay in the curve and lift its last ~10 steps, which moves the minimum towards
lower rates: the safe side. The divisor was
chosen on digits with the one-cycle schedule and checked on other seeds and data (README,
"The LR finder").
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainwell.config import TrainConfig
from trainwell.data import batches
from trainwell.display import progress
from trainwell.exceptions import ConfigError, DataError, ModelError
from trainwell.loop.optimizers import build_optimizer
from trainwell.loop.precision import Precision
from trainwell.loop.state import TrainState
from trainwell.loop.step import StepRunner
from trainwell.loop.tasks import infer_task
from trainwell.reliability.divergence import NonFiniteGuard
from trainwell.system import resolve_device

logger = logging.getLogger("trainwell")

# The finder's suggestions stay inside the range TrainConfig accepts for lr.
MIN_LR, MAX_LR = 1e-6, 1.0


@dataclass
class LRFinderResult:
    """What :func:`find_lr` measured.

    Attributes:
        lrs: The lr of each step taken.
        losses: The training loss of each step (NaN where it was not finite).
        smoothed: ``losses`` smoothed without lag (forward-backward exponential moving average).
        suggested_lr: The suggested (peak) lr, or None when the loss never fell.
        min_loss_lr: The lr where the smoothed loss was lowest.
        stopped_early: Whether the loss diverged before ``end_lr``.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    suggested_lr: float | None = None
    min_loss_lr: float | None = None
    stopped_early: bool = False

    def plot(self, path: str | Path) -> Path:
        """Draw the smoothed loss against the lr (log scale), marking the suggestion; write a PNG."""
        import io

        from matplotlib.figure import Figure

        from trainwell.files.atomic import write_bytes

        figure = Figure(figsize=(7, 4.5), dpi=100)
        figure.subplots_adjust(left=0.11, right=0.97, bottom=0.12, top=0.9)
        axes = figure.subplots()
        axes.plot(self.lrs, self.losses, color="C0", alpha=0.25, label="loss")
        axes.plot(self.lrs, self.smoothed, color="C0", label="smoothed loss")
        if self.suggested_lr is not None:
            axes.axvline(self.suggested_lr, color="C3", linestyle="--", label=f"suggested lr {self.suggested_lr:.2g}")
        if self.min_loss_lr is not None:
            axes.axvline(self.min_loss_lr, color="C7", linestyle=":", label=f"lowest loss at {self.min_loss_lr:.2g}")
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:
            # Keep the divergence at the end from squashing the informative part of the curve.
            low, start = min(finite), finite[0]
            axes.set_ylim(low - 0.05 * (start - low + 1e-12), start + 0.5 * (start - low + 1e-12))
        axes.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="LR finder")
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize="small")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        path = Path(path)
        write_bytes(path, buffer.getvalue())
        return path


def find_lr(
    model: nn.Module,
    train_loader: Iterable[Any],
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    divisor: float = 5.0,
    smoothing: float = 0.9,
    diverge_factor: float = 4.0,
    optimizer: torch.optim.Optimizer | str | Any = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> LRFinderResult:
    """Run the LR range test on ``model`` and suggest a peak learning rate.

    Training steps are the Trainer's: the config's optimizer (AdamW by default), weight decay,
    precision and gradient clipping, with the lr rising exponentially from ``start_lr`` to
    ``end_lr`` over ``num_steps`` batches (the loader is cycled when shorter). The loss is read
    every step, which syncs an accelerator: the finder is a short diagnostic run.

    Args:
        model: The model to probe; its weights, buffers, gradients, mode and device are
            restored afterwards.
        train_loader: Re-iterable ``(inputs, targets)`` batches.
        start_lr: The first lr, > 0.
        end_lr: The last lr, above ``start_lr``.
        num_steps: Steps to take (10 to 10,000), fewer if the loss diverges. Below ~50 the lr
            grows so fast per step that the smoothed curve, and the suggestion, get coarse.
        divisor: The suggestion is the lr of the lowest smoothed loss divided by this.
        smoothing: Weight of the past in the loss's moving averages, in [0, 1).
        diverge_factor: Stop once the (running) smoothed loss exceeds this multiple of its minimum.
        optimizer: An optimizer of ``model``'s parameters to probe with; its state and lrs are
            restored afterwards. None builds the config's optimizer; a name or factory is
            the config's ``optimizer`` option.
        config: A :class:`TrainConfig` (optimizer, weight_decay, precision, max_grad_norm,
            device, task, loss_fn); ``options`` override its fields.

    Returns:
        An :class:`LRFinderResult` with the curve and ``suggested_lr``.

    Raises:
        ModelError: ``model`` is not an ``nn.Module`` with trainable parameters.
        DataError: the loader is empty or its batches do not fit the model.
        ConfigError: a finder argument or an option is out of range.

    Example:
        >>> import torch, trainwell
        >>> from trainwell.data import TensorLoader
        >>> x = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
        >>> y = (x[:, 0] > 0).long()
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        >>> result = trainwell.find_lr(model, TensorLoader(x, y, seed=0))
        >>> 1e-6 <= result.suggested_lr <= 1
        True
    """
    _check_arguments(model, start_lr, end_lr, num_steps, divisor, smoothing, diverge_factor)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        options["optimizer"] = optimizer  # a config choice ("adamw", "sgd", a factory), not an instance
        optimizer = None
    config = config or TrainConfig()
    if options:
        config = config.replace(**options)
    device = resolve_device(config.device)
    rng_devices = [device] if device.type == "cuda" else []
    with _restored(model, optimizer), torch.random.fork_rng(devices=rng_devices):
        model.to(device)
        model.train()
        precision = Precision(config.precision, device)
        optimizer = optimizer or build_optimizer(model, config, start_lr)
        result = _range_test(
            model, train_loader, optimizer, precision, config, start_lr, end_lr, num_steps, smoothing, diverge_factor
        )
    _suggest(result, divisor)
    logger.info(
        "LR finder: %d steps from lr %.2g to %.2g%s; lowest smoothed loss at lr %s; suggested lr %s.",
        len(result.lrs),
        start_lr,
        result.lrs[-1] if result.lrs else end_lr,
        " (stopped: the loss diverged)" if result.stopped_early else "",
        f"{result.min_loss_lr:.2g}" if result.min_loss_lr else "-",
        f"{result.suggested_lr:.2g}" if result.suggested_lr else "none (the loss never fell)",
    )
    return result


def _range_test(
    model: nn.Module,
    train_loader: Iterable[Any],
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    config: TrainConfig,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    smoothing: float,
    diverge_factor: float,
) -> LRFinderResult:
    """Steps at rising lrs, taken as training takes them (:class:`~trainwell.loop.step.StepRunner`), until the loss diverges."""
    result = LRFinderResult()
    task = None

    def train_step(batch: tuple[Any, Any]) -> torch.Tensor:
        nonlocal task
        inputs, targets = batch
        outputs = batches.forward(model, inputs)
        if task is None:
            task = infer_task(config.task, config.loss_fn, outputs, targets)
        return task.loss(outputs, targets)

    # The finder reads every loss itself and stops at the first bad one: the guard only keeps a bad
    # step's update from being applied, as in training.
    guard = NonFiniteGuard(max_consecutive=num_steps + 1, on_skip=lambda *args, **kwargs: None)
    parameters = [p for p in model.parameters() if p.requires_grad]
    step = StepRunner(
        train_step,
        optimizer,
        precision,
        parameters,
        state=TrainState(),
        guard=guard,
        max_grad_norm=config.max_grad_norm,
        split_on_oom=config.split_batch_on_oom,
    )
    average, best = 0.0, math.inf
    growth = (end_lr / start_lr) ** (1 / (num_steps - 1))
    bar = progress(total=num_steps, desc="LR finder", unit="step", leave=False)
    for index, batch in enumerate(_cycle(train_loader, num_steps)):
        bar.update()
        lr = start_lr * growth**index
        for group in optimizer.param_groups:
            group["lr"] = lr
        inputs, targets = batches.move_to(batches.split_batch(batch), precision.device)
        value = step(inputs, targets).item()
        result.lrs.append(lr)
        result.losses.append(value if math.isfinite(value) else math.nan)
        if not math.isfinite(value):
            result.stopped_early = True
            break
        # The running (one-way, bias-corrected) average only decides when to stop.
        average = smoothing * average + (1 - smoothing) * value
        running = average / (1 - smoothing ** (index + 1))
        best = min(best, running)
        if index > 0 and running > diverge_factor * best:
            result.stopped_early = True
            break
    bar.close()
    result.smoothed = _without_lag(result.losses, smoothing)
    return result


def _without_lag(values: list[float], smoothing: float) -> list[float]:
    """An exponential moving average run forwards and then backwards over the finite prefix."""
    finite = (
        len(values)
        if all(map(math.isfinite, values))
        else next(i for i, v in enumerate(values) if not math.isfinite(v))
    )
    smoothed = values[:finite]
    for direction in (1, -1):
        ordered, average = smoothed[::direction], None
        for index, value in enumerate(ordered):
            average = value if average is None else smoothing * average + (1 - smoothing) * value
            ordered[index] = average
        smoothed = ordered[::direction]
    return smoothed + [math.nan] * (len(values) - finite)


def _suggest(result: LRFinderResult, divisor: float) -> None:
    finite = [(loss, index) for index, loss in enumerate(result.smoothed) if math.isfinite(loss)]
    if not finite:
        return
    lowest, index = min(finite)
    if index == 0 or lowest >= result.smoothed[0]:
        return  # the loss never fell: no lr in the range trains this model
    result.min_loss_lr = result.lrs[index]
    result.suggested_lr = min(max(result.min_loss_lr / divisor, MIN_LR), MAX_LR)


def _cycle(loader: Iterable[Any], steps: int) -> Iterator[Any]:
    """``steps`` batches, starting the loader again whenever it runs out."""
    given = 0
    while given < steps:
        empty = True
        for batch in loader:
            empty = False
            yield batch
            given += 1
            if given == steps:
                return
        if empty:
            raise DataError("train_loader is empty: it yielded no batches. Pass a loader with at least one batch.")


class _restored:
    """Puts back the model's weights, buffers, gradients, mode and device, and the optimizer's state."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        self.model, self.optimizer = model, optimizer

    def __enter__(self) -> None:
        model = self.model
        self.training = model.training
        self.device = next(model.parameters()).device
        self.state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
        self.optimizer_state = copy.deepcopy(self.optimizer.state_dict()) if self.optimizer is not None else None

    def __exit__(self, *exc_info: object) -> None:
        model = self.model
        model.to(self.device)
        model.load_state_dict(self.state)
        for name, parameter in model.named_parameters():
            parameter.grad = self.grads[name]
        model.train(self.training)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(self.optimizer_state)


def _check_arguments(
    model: Any, start_lr: float, end_lr: float, num_steps: int, divisor: float, smoothing: float, diverge_factor: float
) -> None:
    if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
        raise ModelError(
            f"model={type(model).__name__} cannot be probed: expected a torch.nn.Module with trainable parameters."
        )
    problems = []
    if not (isinstance(start_lr, (int, float)) and 0 < start_lr < math.inf):
        problems.append(f"start_lr={start_lr!r} is out of range: expected a number > 0.")
    elif not (isinstance(end_lr, (int, float)) and start_lr < end_lr < math.inf):
        problems.append(f"end_lr={end_lr!r} is out of range: expected a finite number above start_lr={start_lr!r}.")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 10 <= num_steps <= 10_000:
        problems.append(f"num_steps={num_steps!r} is out of range: expected an integer from 10 to 10000.")
    if not (isinstance(divisor, (int, float)) and divisor >= 1):
        problems.append(f"divisor={divisor!r} is out of range: expected a number ≥ 1.")
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        problems.append(f"smoothing={smoothing!r} is out of range: expected a number from 0 to below 1.")
    if not (isinstance(diverge_factor, (int, float)) and diverge_factor > 1):
        problems.append(f"diverge_factor={diverge_factor!r} is out of range: expected a number > 1.")
    if problems:
        raise ConfigError("\n".join(problems))
