"""How long a run is: epochs, ``max_steps``, the batches of each epoch and of each validation pass.

Lightning's names for the same things: ``max_steps``, ``limit_train_batches``,
``limit_val_batches``, ``overfit_batches``, ``fast_dev_run``, ``accumulate_grad_batches``
(optimizer steps per epoch). One :class:`RunLimits` answers every question the loop asks about
them, so that the schedules plan, the loop stops and the gradient windows close on the same numbers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from trainwell.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from trainwell.config import TrainConfig


def dev_run_config(config: TrainConfig, resume: Any) -> TrainConfig:
    """The config of a ``fast_dev_run``: one epoch of one training and one validation batch, writing no file.

    Raises:
        ConfigError: ``resume`` was given too (a dev run reads no checkpoint).
    """
    if resume is not None:
        raise ConfigError(
            f"fast_dev_run=True with resume={str(resume)!r}: a dev run reads and writes no files. "
            "Drop resume=..., or fast_dev_run to continue the run."
        )
    return config.replace(
        run_dir=None,
        loggers=[],
        epochs=1,
        max_steps=None,
        limit_train_batches=1,
        limit_val_batches=1,
        overfit_batches=None,
        val_every_steps=None,
    )


def first_batches(loader: Iterable[Any], count: int) -> list[Any]:
    """The first ``count`` batches of ``loader``, kept: what ``overfit_batches`` trains on every epoch.

    Taken under a fork of the random state, so that training starts from the same state as without it.

    Raises:
        DataError: the loader has fewer batches.
    """
    with torch.random.fork_rng(devices=[]):
        kept = list(itertools.islice(iter(loader), count))
    if len(kept) < count:
        raise DataError(
            f"overfit_batches={count} but train_loader has only {len(kept)} batches: "
            f"use overfit_batches={len(kept)} or fewer."
        )
    return kept


class RunLimits:
    """The run's length, as the config limits it, for loaders of the given lengths.

    Args:
        config: The run's config (``epochs``, ``max_steps``, ``limit_train_batches``,
            ``limit_val_batches``, ``accumulate_grad_batches``, ``val_every_steps``).
        train_length: ``len(train_loader)`` (after ``overfit_batches``), or None for a stream.
        val_length: ``len(val_loader)``, or None.

    Attributes:
        epochs: Epochs at most.
        max_steps: Optimizer steps at most, or None.
        train_batches: Training batches per epoch, or None when unknown (a stream without a limit).
        val_batches: Validation batches per pass at most, or None for all.

    Raises:
        DataError: a fractional limit for a loader without a length.

    Example:
        >>> from trainwell import TrainConfig
        >>> limits = RunLimits(TrainConfig(epochs=3, limit_train_batches=0.5, accumulate_grad_batches=4), 50, None)
        >>> limits.train_batches, limits.steps_per_epoch, limits.total_steps
        (25, 7, 21)
    """

    def __init__(self, config: TrainConfig, train_length: int | None, val_length: int | None) -> None:
        self.epochs = config.epochs
        self.max_steps = config.max_steps
        self.accumulate = config.accumulate_grad_batches
        self.val_every_steps = config.val_every_steps
        limit = _limited(config.limit_train_batches, train_length, "limit_train_batches", "train_loader")
        # Without a limit an epoch is the whole loader (of unknown length for a stream).
        self.train_batches = train_length if limit is None else limit
        if self.train_batches is not None and train_length is not None:
            self.train_batches = min(self.train_batches, train_length)
        self.val_batches = _limited(config.limit_val_batches, val_length, "limit_val_batches", "val_loader")
        # Whether the limit ends epochs before the loader does.
        self.cuts_epochs = self.train_batches is not None and (
            train_length is None or self.train_batches < train_length
        )

    @property
    def steps_per_epoch(self) -> int | None:
        """Optimizer steps per epoch (the last gradient window of an epoch may be shorter), or None."""
        return math.ceil(self.train_batches / self.accumulate) if self.train_batches is not None else None

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps in the whole run as planned (what the built-in schedules span), or None when unknown."""
        planned = self.epochs * self.steps_per_epoch if self.steps_per_epoch is not None else None
        if self.max_steps is None:
            return planned
        return self.max_steps if planned is None else min(planned, self.max_steps)

    def go_on(self, state: Any) -> bool:
        """Whether training goes on: an epoch is under way (resumed inside it), or epochs and steps remain and
        nothing asked to stop."""
        if state.batch_in_epoch is not None:
            return True
        return state.completed_epochs < self.epochs and not state.should_stop and not self.reached(state.global_step)

    def epoch(self, position: Any, first: int) -> Iterable[Any]:
        """The epoch's batches from batch ``first`` on, up to the limit.

        Args:
            position: The loader's :class:`~trainwell.reliability.loader_position.LoaderPosition`.
            first: Batches of the epoch already trained on (resuming inside it), else 0.
        """
        if not self.cuts_epochs:
            return position.begin_epoch(first)  # the loader's own end ends the epoch, as without limits
        left = self.train_batches - first
        # Resumed at the limit: the loader is not even positioned (a TensorLoader would start its next pass there).
        return itertools.islice(position.begin_epoch(first), left) if left > 0 else ()

    def validation(self, loader: Iterable[Any]) -> Iterable[Any]:
        """The batches of one validation pass."""
        return loader if self.val_batches is None else _Limited(loader, self.val_batches)

    def left_in_epoch(self, batch_index: int) -> int | None:
        """Batches left in the epoch from ``batch_index`` on (that one included), or None when unknown."""
        return self.train_batches - batch_index if self.train_batches is not None else None

    def reached(self, global_step: int) -> bool:
        """Whether ``max_steps`` is reached: training stops here."""
        return self.max_steps is not None and global_step >= self.max_steps

    def validates_at(self, global_step: int, batch_index: int) -> bool:
        """Whether to validate after the step that ended at ``batch_index`` (``val_every_steps``; the
        epoch's last step is validated by the epoch's end, and the run's last step too)."""
        if self.val_every_steps is None or global_step % self.val_every_steps:
            return False
        left = self.left_in_epoch(batch_index + 1)
        return left != 0 and not self.reached(global_step)

    def warn_unreachable(self, log: Any) -> None:
        """Log when ``max_steps`` cannot be reached within ``epochs``."""
        per_epoch = self.steps_per_epoch
        if self.max_steps is not None and per_epoch is not None and self.epochs * per_epoch < self.max_steps:
            log.warning(
                "max_steps=%d will not be reached: %d epochs x %d steps = %d steps. Raise epochs (or leave it unset).",
                self.max_steps,
                self.epochs,
                per_epoch,
                self.epochs * per_epoch,
            )


class _Limited:
    """The first ``count`` batches of a loader, re-iterable, with a length (distributed validation shares ask it)."""

    def __init__(self, loader: Iterable[Any], count: int) -> None:
        self.loader = loader
        self.count = count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)

    def __len__(self) -> int:
        try:
            return min(len(self.loader), self.count)
        except TypeError:
            return self.count


def _limited(limit: int | float | None, length: int | None, option: str, source: str) -> int | None:
    """A limit in batches: an integer as it is, a share of ``length`` (at least one batch); None for no limit."""
    if limit is None:
        return None
    if isinstance(limit, int):
        return limit
    if length is None:
        raise DataError(
            f"{option}={limit} is a share of the batches, but {source} has no len(): "
            f"give a number of batches instead ({option}=100)."
        )
    return max(1, int(length * limit))
