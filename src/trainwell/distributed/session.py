"""Data parallelism under torchrun: the same training in several processes, on one machine or many.

``torchrun --nproc_per_node=N -m trainwell train ...`` (or the same for a script calling
``trainwell.fit``) starts N processes that each run the whole program. Through this module, the
Trainer of each process:

- reads its place from torchrun's ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
  ``MASTER_PORT``; joins the process group (NCCL on CUDA, gloo on CPUs), or uses one the program
  initialised, and destroys it at the end only if it created it; takes the GPU of its local rank;
- refuses configs (compared by hash), batch sizes or numbers of batches that differ between processes;
- trains ``DistributedDataParallel(model)`` (rank 0's weights everywhere, gradients averaged), or
  under ``strategy="fsdp"`` a sharded copy of it (:mod:`trainwell.distributed.fsdp`), on its
  share of the data (:mod:`trainwell.data.sharding`), with ``no_sync()`` on all micro-batches but
  the last when out of memory splits a batch (:mod:`trainwell.reliability.oom`);
- averages each step's loss over the processes, so that all judge a step (non-finite, spiking)
  alike and ``train_loss`` is the global batch's; sums the validation loss and the counters
  behind every validation metric (:mod:`trainwell.loop.metrics`), so that each covers the whole
  validation set;
- leaves the run directory (config, logs, metrics, plots, report, checkpoints) to rank 0, and
  loads on resume the checkpoint rank 0 picked; stops with the others, after one checkpoint,
  when any process wants to stop or received SIGTERM/SIGINT
  (:class:`~trainwell.callbacks.process_sync.ProcessSync`).

A loader's batch size is the batch **per process**; the global batch is that times the number of
processes, and ``lr_scaling`` applies to it. In one process (``WORLD_SIZE`` unset or 1, no process
group initialised) nothing here runs: no collective, no wrapper, no extra synchronisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainwell.distributed.elastic import shared_store_warning
from trainwell.distributed.environment import Environment, choose_backend, device_for, environment
from trainwell.distributed.primary import is_primary, on_primary, start_in  # noqa: F401 - the Trainer's entry points
from trainwell.exceptions import ConfigError, DataError, TrainingInterrupted

if TYPE_CHECKING:
    from trainwell.config import TrainConfig

logger = logging.getLogger("trainwell")

# Options that may differ between processes: rank 0's run directory is the run's.
_PER_PROCESS_OPTIONS = {"run_dir"}


# ------------------------------------------------------------------------- the session


class Session:
    """This process's part in a data-parallel run: its rank, device, and the collectives the Trainer uses.

    Created by :func:`joined` for the duration of ``fit``; ``trainer.distributed`` holds it
    (None in one process).

    Attributes:
        rank, local_rank, world_size: The process's place.
        device: Its device (``cuda:LOCAL_RANK`` on CUDA).
        backend: ``"nccl"`` or ``"gloo"``.
        created_group: Whether trainwell initialised the process group (and destroys it at the end).
        ddp: The ``DistributedDataParallel`` wrapper of the model, once :meth:`wrap` was called.
        sharding: Under ``strategy="fsdp"``, the :class:`~trainwell.distributed.fsdp.Sharding`
            of the model (None under DDP).
    """

    def __init__(
        self, rank: int, local_rank: int, world_size: int, device: torch.device, backend: str, created_group: bool
    ) -> None:
        self.rank = rank
        self.local_rank = local_rank
        self.world_size = world_size
        self.device = device
        self.backend = backend
        self.created_group = created_group
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        self.sharding: Any = None
        self.restarts: int | None = None  # torchrun's restarts of the group (distributed/elastic.py)

    @property
    def is_primary(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def mesh(self) -> Any:
        """The device mesh the weights are sharded on (FSDP), or None (DDP)."""
        return self.sharding.mesh if self.sharding is not None else None

    def use_strategy(self, strategy: str) -> None:
        """Share the model as ``strategy`` says: ``"ddp"`` (whole model in every process) or ``"fsdp"`` (sharded)."""
        if strategy == "fsdp":
            from trainwell.distributed.fsdp import Sharding

            self.sharding = Sharding(self)

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module the processes train: ``module`` on this process's device, or (FSDP) its sharded copy."""
        return self.sharding.shard(module) if self.sharding is not None else module.to(self.device)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in DistributedDataParallel: rank 0's weights and buffers everywhere, gradients averaged each step.

        Under FSDP the placed module is returned, its weights sharded again after the checks'
        forward passes: it gathers and reduces by itself.
        """
        if self.sharding is not None:
            return self.sharding.resharded(module)
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(module, device_ids=device_ids)
        return self.ddp

    def release(self, original: torch.nn.Module, trained: Any, error: BaseException | None = None) -> Any:
        """The plain module once ``fit`` ends: ``trained`` under DDP; under FSDP ``original``, given the whole weights.

        Gathering the weights needs every process: after an ``error`` other than the interruption
        every process shares, ``original`` keeps the weights it had (the checkpoints hold the run's).
        """
        if self.sharding is None or trained is None:
            return trained if self.sharding is None else original
        if error is None or isinstance(error, TrainingInterrupted):
            return self.sharding.release(original, trained)
        logger.warning(
            "Training failed under FSDP: the model keeps the weights it had; the checkpoints hold the run's."
        )
        return original

    def validating(self, module: torch.nn.Module) -> contextlib.AbstractContextManager[Any]:
        """Around validation on the plain module: rank 0's buffers everywhere; under FSDP the whole weights gathered."""
        self.broadcast_buffers(module)
        return self.sharding.gathered(module) if self.sharding is not None else contextlib.nullcontext()

    def plain(self, tensor: torch.Tensor) -> torch.Tensor:
        """A value computed over sharded tensors (a gradient norm) as a plain tensor, the same in every process."""
        from trainwell.distributed.fsdp import full_tensor

        return full_tensor(tensor) if self.sharding is not None else tensor

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        """A checkpoint read whole, in every process together (a sharded one: this process's pieces)."""
        from trainwell.distributed import shards

        return shards.read(path, self)

    def checkpoint_writer(self) -> Callable[..., Path] | None:
        """How every process writes a checkpoint together (FSDP: sharded), or None: rank 0 writes one file."""
        if self.sharding is None:
            return None
        from trainwell.distributed import shards

        return lambda path, checkpoint, **fields: shards.write(self, path, checkpoint, **fields)

    # -------------------------------------------------------------- collectives

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), in every process."""
        holder = [value]
        torch.distributed.broadcast_object_list(holder, src=0)
        return holder[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (any picklable object), by rank, in every process."""
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over the processes (a new tensor; ``tensor`` is left as it is)."""
        total = tensor.detach().clone()
        torch.distributed.all_reduce(total)
        return total

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the processes (gloo has no averaging reduction: a sum, divided)."""
        return self.sum(tensor) / self.world_size

    def any(self, *values: int) -> list[int]:
        """The largest of each value over the processes (a flag raised anywhere, the highest signal number)."""
        packed = torch.tensor(values, dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.MAX)
        return [int(value) for value in packed.tolist()]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) in every process, before validating on the plain module.

        Validation runs on the module, not on DistributedDataParallel: DDP's forward may broadcast
        buffers, a collective that would need every process to validate the same number of
        batches, and validation shards need not be equal.
        """
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Around one micro-batch's forward and backward: no gradient synchronisation unless it is the ``last``."""
        if last or self.ddp is None:
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def reduce_validation(self, totals: torch.Tensor, samples: int) -> tuple[torch.Tensor, int]:
        """Validation sums (the loss's and the metrics' counters) and sample count, added up over every process."""
        count = torch.tensor([float(samples)], dtype=totals.dtype, device=totals.device)
        packed = self.sum(torch.cat([totals, count]))
        return packed[:-1], int(packed[-1].item())

    def barrier(self) -> None:
        """Wait until every process got here."""
        if self.backend == "nccl":
            torch.distributed.barrier(device_ids=[self.device.index])
        else:
            torch.distributed.barrier()

    # -------------------------------------------------------------- checks

    def check_same_config(self, config: TrainConfig) -> Any:
        """Refuse to train when processes resolved different configs; return rank 0's ``run_dir``.

        Every process sends a hash of its resolved config (without ``run_dir``, which only rank 0
        uses) and its ``run_dir``; the configs themselves are gathered only when the hashes differ,
        to name what differs.

        Raises:
            ConfigError: in every process, naming the options that differ and on which rank.
        """
        options = config.to_yaml_dict()
        shared = {name: value for name, value in options.items() if name not in _PER_PROCESS_OPTIONS}
        digest = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()
        gathered = self.gather((digest, options.get("run_dir")))
        if any(theirs != gathered[0][0] for theirs, _ in gathered):
            every = self.gather(shared)
            lines = [
                f"rank {rank} has {name}={mine[name]!r} where rank 0 has {name}={every[0].get(name)!r}"
                for rank, mine in enumerate(every)
                for name in sorted(mine)
                if mine[name] != every[0].get(name)
            ]
            raise ConfigError(
                "the processes were started with different options ("
                + "; ".join(lines[:10])
                + "): every process must train with the same config. Give each the same command line and config file "
                "(torchrun passes the same arguments to every process)."
            )
        run_dir = gathered[0][1]
        if options.get("run_dir") != run_dir:
            logger.warning(
                "run_dir=%r differs from rank 0's: rank 0 writes the run's files, into %r.",
                options.get("run_dir"),
                run_dir,
            )
        return run_dir

    def share(self, config: TrainConfig, train_loader: Any, val_loader: Any) -> tuple[TrainConfig, Any, Any]:
        """The config with rank 0's ``run_dir`` (every other option checked equal), and this process's share of the data.

        Raises:
            ConfigError: the processes were started with different options.
            DataError: a loader that cannot be sharded, or too small for the number of processes.
        """
        run_dir = self.check_same_config(config)
        if run_dir != config.to_yaml_dict().get("run_dir"):
            config = config.replace(run_dir=run_dir)
        return (config, *shard_loaders(self, config, train_loader, val_loader))

    def check_batches(self, batch_size: int, steps_per_epoch: int | None) -> int:
        """Refuse loaders that differ between processes; return the global batch size (logged).

        Raises:
            DataError: processes have different batch sizes or numbers of batches per epoch
                (they would wait for each other forever, or weigh their gradients wrongly).
        """
        gathered = self.gather((batch_size, steps_per_epoch))
        if any(theirs != gathered[0] for theirs in gathered):
            shown = "; ".join(f"rank {rank}: batches of {b}, {s} per epoch" for rank, (b, s) in enumerate(gathered))
            raise DataError(
                f"the processes' train_loaders differ ({shown}): every process needs the same batch size and number of "
                "batches per epoch. Pass every process the same loader and let trainwell shard it (a TensorLoader, or a "
                "DataLoader over a map-style dataset)."
            )
        global_batch, processes = batch_size * self.world_size, self.world_size
        place = f"{processes} processes ({self.backend}, {self.device.type})"
        logger.info(
            f"Data parallel over {place}: global batch {global_batch} = {batch_size} per process x {processes} processes."
        )
        return global_batch

    def check_resumable(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """Refuse to continue inside an epoch with another number of processes than the checkpoint's.

        Raises:
            ConfigError: the checkpoint was written inside an epoch by a run of another world size.
        """
        written_by = checkpoint.get("world_size", 1)
        if written_by == self.world_size:
            return
        if checkpoint.get("batch_in_epoch"):
            raise ConfigError(
                f"checkpoint '{path}' was written inside an epoch by {written_by} process(es), and {self.world_size} "
                f"resume it: the position in the epoch depends on how the data was shared. Resume with "
                f"torchrun --nproc_per_node={written_by} (times the machines), or from an end-of-epoch checkpoint."
            )
        message = "Resuming with %d processes a run written by %d: the global batch changes; the lr stays as the checkpoint scaled it."
        logger.warning(message, self.world_size, written_by)


# ------------------------------------------------------------------------- what the Trainer calls


@contextlib.contextmanager
def joined(config: TrainConfig) -> Iterator[Session | None]:
    """Around ``fit``: this process's :class:`Session` among the others, or None when it trains alone.

    In one process (``WORLD_SIZE`` unset or 1, no process group initialised) it yields None and
    nothing else happens. Otherwise the process group is joined (or the program's is used), logs
    of ranks other than 0 keep warnings and errors only, and on leaving the group is destroyed if
    trainwell created it.

    Raises:
        ConfigError: a bad launch environment, backend or device.
    """
    place = environment()
    if place is None and not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        yield None
        return
    session = _join(config, place)
    if session is None:  # a process group of one, initialised by the program
        yield None
        return
    session.use_strategy(config.strategy)
    if session.is_primary and shared_store_warning() is not None:
        logger.warning(shared_store_warning())
    rank_filter = _RankFilter(session.rank)
    if not session.is_primary:
        logger.addFilter(rank_filter)
    try:
        yield session
    finally:
        logger.removeFilter(rank_filter)
        if session.created_group:
            torch.distributed.destroy_process_group()


def _join(config: TrainConfig, place: Environment | None) -> Session | None:
    """Initialise the process group (or use the program's), after checking the device and backend."""
    dist = torch.distributed
    if dist.is_initialized():
        world_size, rank = dist.get_world_size(), dist.get_rank()
        if world_size == 1:
            return None
        backend = str(dist.get_backend())
        local_rank = (
            place.local_rank if place is not None else (torch.cuda.current_device() if backend == "nccl" else 0)
        )
        local_world = place.local_world_size if place is not None else world_size
        device = device_for(config.device, Environment(rank, local_rank, world_size, local_world))
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError(
                f"the process group uses NCCL, which reduces CUDA tensors only, but device={config.device!r}: use device='cuda'."
            )
        return Session(rank, local_rank, world_size, device, backend, created_group=False)
    if not dist.is_available():
        raise ConfigError(
            f"WORLD_SIZE={place.world_size}, but this build of torch has no torch.distributed: install one that has."
        )
    device = device_for(config.device, place)
    backend = choose_backend(config.distributed_backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://", rank=place.rank, world_size=place.world_size)
    return Session(place.rank, place.local_rank, place.world_size, device, backend, created_group=True)


# ------------------------------------------------------------------------- sharding the data


def shard_loaders(session: Session, config: TrainConfig, train_loader: Any, val_loader: Any) -> tuple[Any, Any]:
    """Each process's share of the training and validation data, with the shuffling seed of rank 0.

    Raises:
        DataError: as :func:`trainwell.data.sharding.shard_loader`.
    """
    from trainwell.data.sharding import shard_loader

    drawn = random.SystemRandom().randrange(2**31) if config.seed is None else config.seed
    seeds = session.broadcast(
        {"sampler": drawn, "train": getattr(train_loader, "seed", None), "val": getattr(val_loader, "seed", None)}
    )
    place = {"rank": session.rank, "world_size": session.world_size, "sampler_seed": seeds["sampler"]}
    train = shard_loader(train_loader, "train_loader", **place, train=True, seed=seeds["train"])
    if val_loader is None:
        return train, None
    return train, shard_loader(val_loader, "val_loader", **place, train=False, seed=seeds["val"])


class _RankFilter(logging.Filter):
    """In processes other than rank 0: warnings and errors only, each marked with the rank."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        if not str(record.msg).startswith("[rank "):
            record.msg = f"[rank {self.rank}] {record.msg}"
        return True
