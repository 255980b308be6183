"""The loop's state: where training is, what it has recorded, and the current epoch's running sums.

One object holds every counter the loop advances, so that a checkpoint takes them in one
``state_dict()`` and a resume puts them back with one ``load_state_dict()``. The other stateful
parts of a run (model, optimizer, precision, schedule, guard, healer, loader position, callbacks,
random generators) keep their own state; :meth:`trainwell.Trainer.state_dict` composes them all.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from trainwell.exceptions import CheckpointMismatchError
from trainwell.files.model_state import load_model_state

logger = logging.getLogger("trainwell")


@dataclass
class TrainState:
    """Counters, history and events of one run, and the running sums of its current epoch.

    Attributes:
        epoch: The current epoch, numbered from 1 (0 before training starts).
        global_step: Optimizer steps taken so far.
        batch_in_epoch: Training batches done in the current epoch; None between epochs (the
            epoch's training pass is over).
        should_stop: Set to True (by a callback, early stopping, another process) to stop after
            the current epoch.
        history: One metrics row per finished epoch.
        events: What happened on the way (skipped steps, rollbacks, resumes, ...), in order.
        loss_sum, loss_count: The current epoch's summed finite training losses and their
            number: device tensors when steps are judged on the device (no per-step sync), else
            Python numbers.
        epoch_samples: Training samples seen in the current epoch by this process.
        skipped_at_epoch_start: The guard's count of skipped steps when the epoch began.
        sums_device: Where the loss sums live: the training device when steps are judged there,
            else None (the host). Not state: the trainer sets it for the device it trains on.

    Example:
        >>> state = TrainState()
        >>> state.record_event("note", message="hello")
        >>> state.events
        [{'event': 'note', 'epoch': 0, 'step': 0}]
        >>> TrainState().load_state_dict(state.state_dict())
    """

    epoch: int = 0
    global_step: int = 0
    batch_in_epoch: int | None = None
    should_stop: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    loss_sum: Any = 0.0
    loss_count: Any = 0
    epoch_samples: int = 0
    skipped_at_epoch_start: int = 0
    sums_device: torch.device | None = field(default=None, repr=False, compare=False)

    @property
    def completed_epochs(self) -> int:
        """Epochs whose training pass has ended."""
        return self.epoch if self.batch_in_epoch is None else self.epoch - 1

    def begin_epoch(self, skipped: int) -> None:
        """Start the next epoch: advance the counter and zero its running sums.

        Args:
            skipped: The guard's count of skipped steps so far.
        """
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_samples = 0
        self.skipped_at_epoch_start = skipped
        if self.sums_device is None:
            self.loss_sum, self.loss_count = 0.0, 0
        else:
            self.loss_sum = torch.zeros((), dtype=torch.float32, device=self.sums_device)
            self.loss_count = torch.zeros((), dtype=torch.int64, device=self.sums_device)

    def running_loss(self) -> float:
        """Mean training loss of the current epoch's finite steps so far (reading it syncs the device)."""
        count = float(self.loss_count)
        return float(self.loss_sum) / count if count else math.nan

    def record_event(self, event: str, level: int = logging.INFO, message: str | None = None, **fields: Any) -> None:
        """Log something that happened and keep it in :attr:`events` (metrics.jsonl gets it too)."""
        record = {"event": event, "epoch": self.epoch, "step": self.global_step, **fields}
        self.events.append(record)
        logger.log(level, message if message is not None else str(record))

    def state_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            return value.detach().cpu() if isinstance(value, torch.Tensor) else value

        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "batch_in_epoch": self.batch_in_epoch,
            "should_stop": self.should_stop,
            "history": to_plain(self.history),
            "events": to_plain(self.events),
            "loss_sum": plain(self.loss_sum),
            "loss_count": plain(self.loss_count),
            "epoch_samples": self.epoch_samples,
            "skipped_at_epoch_start": self.skipped_at_epoch_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values; the loss sums go to :attr:`sums_device`."""

        def placed(value: Any) -> Any:
            return (
                value.to(self.sums_device)
                if isinstance(value, torch.Tensor) and self.sums_device is not None
                else value
            )

        self.epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.batch_in_epoch = state["batch_in_epoch"]
        self.should_stop = state["should_stop"]
        self.history = list(state["history"])
        self.events = list(state["events"])
        self.loss_sum = placed(state["loss_sum"])
        self.loss_count = placed(state["loss_count"])
        self.epoch_samples = state["epoch_samples"]
        self.skipped_at_epoch_start = state["skipped_at_epoch_start"]


class FromState:
    """A trainer attribute that is the loop state's: ``trainer.epoch`` is ``trainer.state.epoch``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, trainer: Any, owner: type | None = None) -> Any:
        return self if trainer is None else getattr(trainer.state, self.name)

    def __set__(self, trainer: Any, value: Any) -> None:
        setattr(trainer.state, self.name, value)


def load_parts(parts: dict[str, Any], state: dict[str, Any], source: str) -> None:
    """Load each part's state from ``state`` (a ``Trainer.state_dict()``); parts it lacks start afresh.

    The parts load in their order, except the random generators (``"rng"``), which always load
    last so that nothing draws from them after they are restored. The model and optimizer are
    refused, naming what differs, when the state is of another architecture or parameter grouping.

    Raises:
        CheckpointMismatchError: another architecture or optimizer grouping.
        ConfigError: another precision.
    """
    for name in sorted(parts, key=lambda name: name == "rng"):
        part = parts[name]
        if name not in state:
            logger.debug("%s has no state for %s: it starts afresh.", source, name)
        elif name == "model":
            load_model_state(part, state[name], source)
        elif name == "optimizer":
            try:
                part.load_state_dict(state[name])
            except (ValueError, KeyError) as error:
                raise CheckpointMismatchError(
                    f"{source} holds the state of another optimizer or parameter grouping ({error}): resume "
                    "with the optimizer and weight-decay settings the run was started with."
                ) from error
        else:
            part.load_state_dict(state[name])


def to_plain(value: Any) -> Any:
    """``value`` with NumPy scalars and other number-likes turned into Python numbers, anything else odd into text.

    Example:
        >>> import numpy
        >>> to_plain({"loss": numpy.float64(0.5), "shape": (2, 3)})
        {'loss': 0.5, 'shape': [2, 3]}
    """
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {to_plain(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except (TypeError, ValueError):
            pass
    return repr(value)
