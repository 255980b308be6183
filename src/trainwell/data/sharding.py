"""Sharding: which samples each of several processes trains and validates on.

Under torchrun (see :mod:`trainwell.distributed.session`) every process gets the same loaders and reads
its own share of them. Training shares are even, so that every process takes the same number of
steps (a process with one batch more would wait for the others forever); validation shares hold
each sample exactly once, so that the metrics summed over processes are the whole validation
set's. Nothing here talks to other processes: the rank, the number of processes and rank 0's
seeds come in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import Sampler

from trainwell.data.loader import TensorLoader, dataloader_options
from trainwell.exceptions import DataError


def shard_loader(
    loader: Any, name: str, rank: int, world_size: int, sampler_seed: int, train: bool, seed: int | None = None
) -> Any:
    """Process ``rank``'s share of ``loader``'s samples.

    Supported, and how:

    - :class:`trainwell.data.TensorLoader`: :meth:`~trainwell.data.TensorLoader.shard` (``seed``,
      rank 0's, replaces each process's own, so that all cut the same order);
    - a ``DataLoader`` over a map-style dataset with the default sampling (``shuffle=True`` or
      False, ``batch_size``): rebuilt with the same dataset and settings around a
      ``DistributedSampler(shuffle=..., seed=sampler_seed, drop_last=...)`` for training (the
      order then comes from that seed and the epoch, not from the loader's generator), and
      around strided positions without padding for validation, so that every validation sample
      counts exactly once;
    - a ``DataLoader`` whose sampler already is a ``DistributedSampler``: used as it is.

    Args:
        loader: The loader every process was given.
        name: ``"train_loader"`` or ``"val_loader"``, for messages.
        rank, world_size: The process's place.
        sampler_seed: The DistributedSampler's seed (the config's, or one drawn on rank 0).
        train: Training shards are even (padded, as DistributedSampler does); validation shards exact.
        seed: Rank 0's TensorLoader seed.

    Raises:
        DataError: a loader of another kind (a list of batches, an IterableDataset, a custom
            sampler), or fewer batches (training) or samples (validation) than processes.
    """
    from torch.utils.data import DataLoader, DistributedSampler

    if isinstance(loader, TensorLoader):
        _check_enough(name, world_size, len(loader) if train else len(loader.inputs), train, loader.batch_size)
        share = loader.shard(rank, world_size, even=train)
        if seed is not None:
            share.seed = seed
        return share
    if not isinstance(loader, DataLoader):
        raise DataError(
            f"{name} is a {type(loader).__name__}, which trainwell cannot share out between {world_size} processes: pass a "
            "trainwell.data.TensorLoader or a torch DataLoader over a map-style dataset (or give your DataLoader a "
            "DistributedSampler yourself)."
        )
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    _check_shardable(loader, name)
    _check_enough(name, world_size, len(loader) if train else len(loader.dataset), train, loader.batch_size)
    shuffle = type(loader.sampler).__name__ == "RandomSampler"
    if train:
        sampler = DistributedSampler(
            loader.dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=shuffle,
            seed=sampler_seed,
            drop_last=loader.drop_last,
        )
    else:
        sampler = StridedSampler(len(loader.dataset), rank, world_size)
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **dataloader_options(loader)
    )


def _check_shardable(loader: Any, name: str) -> None:
    from torch.utils.data import BatchSampler, IterableDataset, RandomSampler, SequentialSampler

    if isinstance(loader.dataset, IterableDataset):
        raise DataError(
            f"{name} reads an IterableDataset, which trainwell cannot share out between processes (nor tell whether it "
            "shards itself): pass a DataLoader over a map-style dataset, or a trainwell.data.TensorLoader."
        )
    sampler = loader.sampler
    default_batches = loader.batch_size is not None and type(loader.batch_sampler) is BatchSampler
    plain_sampler = type(sampler) is SequentialSampler or (
        type(sampler) is RandomSampler and not sampler.replacement and sampler.num_samples == len(loader.dataset)
    )
    if not (default_batches and plain_sampler):
        raise DataError(
            f"{name} uses its own sampler ({type(sampler).__name__}, batch sampler {type(loader.batch_sampler).__name__}), "
            "which trainwell cannot share out between processes: give the DataLoader a "
            "torch.utils.data.DistributedSampler(dataset) yourself (trainwell calls its set_epoch every epoch), or use "
            "shuffle=True/False with batch_size."
        )


def _check_enough(name: str, world_size: int, count: int, train: bool, batch_size: int) -> None:
    if train and world_size > count:
        raise DataError(
            f"world size {world_size} is larger than the {count} batches of {name} (batch_size={batch_size} per "
            f"process): every process would train on less than one batch per epoch, partly on repeated samples. Start "
            f"at most {count} processes, or lower the batch size."
        )
    if not train and world_size > count:
        raise DataError(
            f"world size {world_size} is larger than the {count} samples of {name}: some process would have nothing to "
            "validate. Use a larger validation set, or fewer processes."
        )


class StridedSampler(Sampler):
    """Positions ``rank, rank + world_size, ...`` of a dataset: each sample in exactly one process's share.

    Example:
        >>> list(StridedSampler(7, rank=1, world_size=3))
        [1, 4]
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.positions = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.positions)

    def __len__(self) -> int:
        return len(self.positions)
