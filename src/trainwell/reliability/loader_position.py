"""The training loader's position: where an epoch resumes, exactly, without training twice on a batch.

Resuming inside an epoch jumps to the saved batch without training on the batches before it:

- a loader with a ``start_at(batch_index)`` method (trainwell's ``TensorLoader``) starts its
  next pass there, from the same order (a function of its seed and the epoch);
- a ``torch.utils.data.DataLoader`` over a map-style dataset is repositioned by its sampler: the
  epoch's index order is redrawn from the random state saved when the epoch began and the
  indices already used are skipped without loading their samples. Exact with ``num_workers=0``;
  with workers the order and the workers' base seed are exact, but randomness drawn inside the
  workers (random augmentation) differs from the uninterrupted run;
- any other iterable (a list of batches, an ``IterableDataset``) is replayed from the start of
  the epoch under the saved random state and the batches already used are discarded (loaded,
  never trained on).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from trainwell.exceptions import CheckpointError


class LoaderPosition:
    """The training loader's part of a run's state: its own state, its generators, and its epoch's starting random state.

    Args:
        loader: The training loader.

    Example:
        >>> position = LoaderPosition([(torch.zeros(2, 1), torch.zeros(2))] * 3)
        >>> batches = position.begin_epoch(batch_in_epoch=0)
        >>> len(list(batches))
        3
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.epoch_start: dict[str, Any] | None = None

    def begin_epoch(self, batch_in_epoch: int) -> Iterable[Any]:
        """The epoch's batches from batch ``batch_in_epoch`` on (0: a new epoch, whose starting random state is kept)."""
        if batch_in_epoch == 0:
            # Once per epoch, a few kilobytes: what a checkpoint inside this epoch needs to reposition the loader.
            self.epoch_start = {"torch": torch.get_rng_state(), "generators": _generator_states(self.loader)}
            return self.loader
        return epoch_batches(self.loader, batch_in_epoch, self.epoch_start)

    def state_dict(self) -> dict[str, Any]:
        return {
            "state": _own_state(self.loader),
            "generators": _generator_states(self.loader),
            "epoch_start": self.epoch_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["state"] is not None and callable(getattr(self.loader, "load_state_dict", None)):
            self.loader.load_state_dict(state["state"])
        _set_generator_states(self.loader, state["generators"])
        self.epoch_start = state["epoch_start"]


def _own_state(train_loader: Any) -> Any:
    """The loader's own ``state_dict()`` (trainwell's TensorLoader: its seed), if it has one and is not a DataLoader."""
    if _is_dataloader(train_loader) or not callable(getattr(train_loader, "load_state_dict", None)):
        return None
    state_dict = getattr(train_loader, "state_dict", None)
    return state_dict() if callable(state_dict) else None


def epoch_batches(train_loader: Any, start: int, epoch_start: dict[str, Any] | None) -> Iterable[Any]:
    """The epoch's batches from batch ``start`` on, as the uninterrupted run would have drawn them.

    Args:
        train_loader: The training loader.
        start: Batches of the epoch already trained on before the checkpoint.
        epoch_start: The random state saved when the epoch began (see :func:`loader_state_at_epoch_start`).
    """
    if start == 0:
        return train_loader
    start_at = getattr(train_loader, "start_at", None)
    if callable(start_at):
        start_at(start)
        return train_loader
    if epoch_start is None:
        raise CheckpointError(
            "the checkpoint lacks the random state of its epoch's start, which resuming mid-epoch needs."
        )
    if _is_dataloader(train_loader) and _is_map_style(train_loader):
        return _dataloader_from(train_loader, start, epoch_start)
    return _replayed(train_loader, start, epoch_start)


def _dataloader_from(loader: Any, start: int, epoch_start: dict[str, Any]) -> Iterable[Any]:
    """A DataLoader iterator positioned at batch ``start``, without loading the skipped samples.

    The uninterrupted run's iterator drew, from the state the epoch began with, first the
    workers' base seed and then the sampler's order; both are drawn again here in that order, the
    used indices are skipped, and a loader over the rest of the same sampler iterator is started
    under that state.
    """
    from torch.utils.data import DataLoader

    from trainwell.data.loader import dataloader_options

    index_source = loader.batch_sampler if loader.batch_sampler is not None else loader.sampler
    with _at_epoch_start(loader, epoch_start):
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)  # the base seed
        indices = iter(index_source)
        for _ in itertools.islice(indices, start):
            pass
        # The sampler's own iterator goes on: whatever it draws later (a sampler may draw again when
        # it runs out) comes from the generators' states at that time, as in the uninterrupted run.
        remaining = _Continuing(indices, len(index_source) - start)
        _rewind(loader, epoch_start)
        options = dataloader_options(loader)
        if loader.batch_sampler is not None:
            rest = DataLoader(loader.dataset, batch_sampler=remaining, **options)
        else:
            rest = DataLoader(loader.dataset, sampler=remaining, batch_size=None, **options)
        return iter(rest)


class _Continuing:
    """A sampler that continues an iterator already under way (DataLoader iterates it once)."""

    def __init__(self, iterator: Iterator[Any], length: int) -> None:
        self.iterator = iterator
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        return self.iterator

    def __len__(self) -> int:
        return self.length


def peek_first_batch(loader: Iterable[Any]) -> Any:
    """The first batch of ``loader``, taken so that iterating it afterwards draws the order it would have drawn.

    Torch's global random state is put back (a DataLoader draws its seeds from it), and so are
    the loader's own generators (a ``DataLoader(generator=...)`` and its sampler's), which a
    first ``iter()`` would otherwise advance. A DataLoader with worker processes over a map-style
    dataset reads the batch in this process, as a worker would (its batch sampler's first
    indices, the dataset's ``__getitems__`` or items, its ``collate_fn``): starting the workers
    for one batch costs a fraction of a second, and each epoch starts them again.

    Raises:
        StopIteration: the loader yields no batches.

    Example:
        >>> peek_first_batch([(torch.zeros(2, 1), torch.ones(2))] * 3)[1]
        tensor([1., 1.])
    """
    states = _generator_states(loader)
    try:
        with torch.random.fork_rng(devices=[]):
            if _with_workers(loader) and loader.batch_sampler is not None and _is_map_style(loader):
                # As iter(loader) does: the workers' base seed first, then the sampler's order.
                torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
                indices = next(iter(loader.batch_sampler))
                read_many = getattr(loader.dataset, "__getitems__", None)
                samples = read_many(indices) if read_many else [loader.dataset[index] for index in indices]
                return loader.collate_fn(samples)
            return next(iter(loader))
    finally:
        _set_generator_states(loader, states)


def _replayed(loader: Iterable[Any], start: int, epoch_start: dict[str, Any]) -> Iterable[Any]:
    """An iterator over ``loader`` past its first ``start`` batches, drawn under the epoch's starting random state."""
    with _at_epoch_start(loader, epoch_start):
        iterator = iter(loader)
        for _ in itertools.islice(iterator, start):
            pass
    return iterator


@contextlib.contextmanager
def _at_epoch_start(loader: Any, epoch_start: dict[str, Any]) -> Iterator[None]:
    """Run a block with the random state the epoch began with, then put back the current one."""
    current = _generator_states(loader)
    with torch.random.fork_rng(devices=[]):
        _rewind(loader, epoch_start)
        yield
    _set_generator_states(loader, current)


def _rewind(loader: Any, epoch_start: dict[str, Any]) -> None:
    torch.set_rng_state(epoch_start["torch"])
    _set_generator_states(loader, epoch_start.get("generators"))


def _generator_states(loader: Any) -> list[torch.Tensor] | None:
    generators = _generators(loader)
    return [generator.get_state() for generator in generators] if generators else None


def _set_generator_states(loader: Any, states: list[torch.Tensor] | None) -> None:
    if not states:
        return
    for generator, state in zip(_generators(loader), states):
        generator.set_state(state)


def _generators(loader: Any) -> list[torch.Generator]:
    """The loader's and its sampler's own generators, if they have any (each counted once)."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _is_dataloader(loader: Any) -> bool:
    from torch.utils.data import DataLoader

    return isinstance(loader, DataLoader)


def _with_workers(loader: Any) -> bool:
    return _is_dataloader(loader) and loader.num_workers > 0


def _is_map_style(loader: Any) -> bool:
    from torch.utils.data import IterableDataset

    return not isinstance(loader.dataset, IterableDataset)
