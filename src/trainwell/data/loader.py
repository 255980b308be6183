"""TensorLoader: fast batches from in-memory tensors, by slicing instead of collating."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

from trainwell.exceptions import DataError


class TensorLoader:
    """Batches of ``(inputs, targets)`` cut from whole tensors, in a seeded shuffled order.

    ``DataLoader(TensorDataset(x, y))`` fetches every sample on its own and collates them with
    ``torch.stack``; this loader gathers each batch with one indexing operation, which is
    measurably faster for in-memory data (see ``benchmarks/loop_overhead.py``).

    The order of epoch ``e`` is a function of ``(seed, e)`` only, so it is reproducible, and a
    resumed run sees exactly the batches it would have seen. The trainer calls
    :meth:`set_epoch` before each epoch; used on its own, the loader moves to the next epoch's
    order after each complete pass.

    Args:
        inputs: A tensor (or array) whose first dimension indexes samples.
        targets: A tensor (or array) with as many rows as ``inputs``.
        batch_size: Samples per batch.
        shuffle: Draw a new order every epoch.
        drop_last: Drop the last, smaller batch.
        seed: Seed of the shuffling order; None draws one from torch's global RNG (so
            ``torch.manual_seed`` makes it reproducible).
        transform: ``transform(inputs, generator) -> inputs`` applied to each batch's inputs
            (training-only augmentation, e.g. :class:`~trainwell.data.augment.ImageAugment`),
            drawing from a generator seeded by ``(seed, epoch, batch)``.
        pin_memory: Keep the tensors, and every batch cut from them, in page-locked memory so
            that copies to a CUDA device run asynchronously (the trainer copies with
            ``non_blocking=True``). Ignored, with nothing pinned, when CUDA is not available.
        target_scaling: For standardised regression targets, the
            :class:`~trainwell.data.targets.TargetScaling` that standardised them: ``fit`` and
            ``evaluate`` read it here (``loader.target_scaling``) to report val_mae and val_rmse in
            the targets' own units. :meth:`trainwell.data.Splits.loaders` sets it.

    Example:
        >>> loader = TensorLoader(torch.arange(10.0).unsqueeze(1), torch.arange(10), batch_size=4, seed=0)
        >>> len(loader), [len(y) for _, y in loader]
        (3, [4, 4, 2])
    """

    def __init__(
        self,
        inputs: Any,
        targets: Any,
        batch_size: int = 64,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = None,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        pin_memory: bool = False,
        target_scaling: Any = None,
    ) -> None:
        self.inputs = _as_tensor(inputs)
        self.targets = _as_tensor(targets)
        if self.inputs.dim() == 0 or self.targets.dim() == 0:
            raise DataError("TensorLoader needs inputs and targets with a sample dimension: got a 0-dim tensor.")
        if len(self.inputs) != len(self.targets):
            raise DataError(
                f"TensorLoader got {len(self.inputs)} inputs but {len(self.targets)} targets: "
                "inputs and targets need one row per sample."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size={batch_size!r} is out of range: expected an integer ≥ 1.")
        if drop_last and len(self.inputs) < batch_size:
            raise DataError(
                f"TensorLoader with drop_last=True and batch_size={batch_size} would yield no batches from "
                f"{len(self.inputs)} samples: lower batch_size or set drop_last=False."
            )
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else seed
        self.epoch = 0
        self.transform = transform
        self.target_scaling = target_scaling
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        if self.pin_memory:
            self.inputs, self.targets = self.inputs.pin_memory(), self.targets.pin_memory()
        self._start_batch = 0
        # (rank, world_size, even) when this loader is one process's share of the data (see shard()).
        self._shard: tuple[int, int, bool] | None = None

    def __len__(self) -> int:
        samples = self._shard_samples()
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    def shard(self, rank: int, world_size: int, even: bool = True) -> TensorLoader:
        """The share of the samples that process ``rank`` of ``world_size`` reads, as a new loader over the same tensors.

        Every epoch, each share cuts the same seeded order as the whole loader's at positions
        ``rank, rank + world_size, rank + 2 * world_size, ...``: batch ``k`` of every share
        together hold the samples of batch ``k`` of the whole loader at ``world_size`` times the
        batch size (the global batch). The trainer shards loaders itself under torchrun.

        Args:
            rank: This process's rank, from 0.
            world_size: How many processes share the data.
            even: Give every share the same number of samples, as training needs (every process
                takes the same number of steps): the order is padded with its own first samples
                to a multiple of ``world_size`` (with ``drop_last``, cut to one), as
                ``torch.utils.data.DistributedSampler`` does. False gives each sample to exactly one
                share, as validation needs.

        Returns:
            A TensorLoader of ``batch_size`` per process, with this loader's seed, transform and epoch.

        Example:
            >>> loader = TensorLoader(torch.arange(6.0).unsqueeze(1), torch.arange(6), batch_size=2, shuffle=False)
            >>> [y.tolist() for _, y in loader.shard(1, 2)]
            [[1, 3], [5]]
        """
        if not 0 <= rank < world_size:
            raise DataError(f"rank={rank} is out of range for world_size={world_size}: expected 0 to {world_size - 1}.")
        share = copy.copy(self)
        share._shard = (rank, world_size, even)
        return share

    def _shard_samples(self) -> int:
        samples = len(self.inputs)
        if self._shard is None:
            return samples
        rank, world_size, even = self._shard
        if not even:
            return len(range(rank, samples, world_size))
        return samples // world_size if self.drop_last else -(-samples // world_size)

    def _shard_order(self, order: torch.Tensor) -> torch.Tensor:
        """This share's positions of an epoch's order (``_shard`` is set)."""
        rank, world_size, even = self._shard
        if even:
            total = self._shard_samples() * world_size
            if total > len(order):  # padded with the order's own first samples, as DistributedSampler does
                order = order.repeat(-(-total // len(order)))
            order = order[:total]
        return order[rank::world_size]

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (numbered from 0) for the next pass."""
        self.epoch = epoch

    def start_at(self, batch_index: int) -> None:
        """Begin the next pass at batch ``batch_index`` of its order (how a resumed run skips what it trained on)."""
        self._start_batch = batch_index

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        stop = len(self) * self.batch_size
        first_batch, self._start_batch = self._start_batch, 0
        first = first_batch * self.batch_size
        plain = self.transform is None and not self.pin_memory
        if self.shuffle or self._shard is not None:
            if self.shuffle:
                order = torch.randperm(len(self.inputs), generator=torch.Generator().manual_seed(self.seed + epoch))
            else:
                order = torch.arange(len(self.inputs))
            if self._shard is not None:
                order = self._shard_order(order)
            for start in range(first, stop, self.batch_size):
                index = order[start : start + self.batch_size]
                if plain:
                    yield self.inputs[index], self.targets[index]
                else:
                    yield self._finish(
                        self._gather(self.inputs, index), self._gather(self.targets, index), epoch, start // self.batch_size
                    )
        else:
            for start in range(first, stop, self.batch_size):
                # Slices of pinned tensors are pinned views: no copy at all.
                inputs, targets = self.inputs[start : start + self.batch_size], self.targets[start : start + self.batch_size]
                yield (inputs, targets) if plain else self._finish(inputs, targets, epoch, start // self.batch_size)
        # Only a complete pass moves on to the next epoch's order.
        self.epoch = epoch + 1

    def _gather(self, tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if not self.pin_memory:
            return tensor[index]
        # Gather straight into page-locked memory (from torch's caching host allocator), so the
        # batch needs no second copy before an asynchronous transfer.
        out = torch.empty((len(index), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=True)
        return torch.index_select(tensor, 0, index, out=out)

    def _finish(self, inputs: torch.Tensor, targets: torch.Tensor, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.transform is not None:
            # A generator per batch, seeded by (seed, epoch, batch): a pass that starts at batch k
            # (a resumed run) draws exactly what the uninterrupted pass drew for batch k.
            generator = torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 1_000_003 + batch) % 2**63)
            inputs = self.transform(inputs, generator)
            if self.pin_memory and not inputs.is_pinned():
                inputs = inputs.pin_memory()
        return inputs, targets

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.epoch = state["epoch"]


def _as_tensor(values: Any) -> torch.Tensor:
    """A tensor view of ``values``; NumPy float64 becomes float32, the dtype models are built in."""
    if isinstance(values, torch.Tensor):
        return values
    tensor = torch.as_tensor(values)
    return tensor.float() if tensor.dtype == torch.float64 else tensor


def dataloader_options(loader: Any) -> dict[str, Any]:
    """The options of a ``torch.utils.data.DataLoader`` that carry over to a new loader over its dataset.

    Everything but the dataset, batching and sampling: workers, collation, pinning, timeouts and
    the generator. Used where trainwell rebuilds a user's loader (one process's share under
    torchrun, the rest of an epoch on resume) so that the rebuilt one loads the same way.
    """
    options = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    for optional in ("pin_memory_device", "in_order"):  # newer torch versions
        if hasattr(loader, optional):
            options[optional] = getattr(loader, optional)
    return options
