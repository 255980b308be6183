"""Where a process stands under torchrun: its rank, its machine's share, its device, and the process group's backend.

torchrun (or SLURM, or a Kubernetes job running it) tells each process its place through
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
everything here reads those and refuses inconsistent values with the launch command that fixes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from trainwell.exceptions import ConfigError

LAUNCH_HINT = (
    "start the processes with torchrun (e.g. torchrun --nproc_per_node=2 -m trainwell train), which sets RANK, "
    "LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
)


@dataclass(frozen=True)
class Environment:
    """What the launcher told this process about its place among the others.

    Attributes:
        rank: This process's rank, from 0 to ``world_size - 1``.
        local_rank: Its rank on this machine (which GPU it takes).
        world_size: How many processes train together.
        local_world_size: How many of them run on this machine.
    """

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int


def environment(env: dict[str, str] | None = None) -> Environment | None:
    """This process's place from torchrun's variables, or None when it trains alone.

    Args:
        env: The environment to read (``os.environ`` when None).

    Returns:
        None when ``WORLD_SIZE`` is unset or 1, else the :class:`Environment`.

    Raises:
        ConfigError: a variable is not an integer, out of range, or missing (``RANK``,
            ``MASTER_ADDR``, ``MASTER_PORT`` when ``WORLD_SIZE`` > 1).

    Example:
        >>> environment({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
        Environment(rank=1, local_rank=1, world_size=2, local_world_size=2)
        >>> environment({}) is None
        True
    """
    env = os.environ if env is None else env
    world_size = _integer(env, "WORLD_SIZE", 1, minimum=1)
    if world_size == 1:
        return None
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world_size} is set, but {' and '.join(missing)} not: {LAUNCH_HINT}.")
    rank = _integer(env, "RANK", 0, minimum=0)
    if rank >= world_size:
        raise ConfigError(
            f"RANK={rank} is out of range for WORLD_SIZE={world_size}: expected 0 to {world_size - 1}; {LAUNCH_HINT}."
        )
    _integer(env, "MASTER_PORT", 0, minimum=1)
    local_world_size = _integer(env, "LOCAL_WORLD_SIZE", world_size, minimum=1)
    local_rank = _integer(env, "LOCAL_RANK", rank % local_world_size, minimum=0)
    return Environment(rank, local_rank, world_size, local_world_size)


def _integer(env: Any, name: str, default: int, minimum: int) -> int:
    text = env.get(name)
    if not text:
        return default
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < minimum:
        raise ConfigError(f"{name}={text!r} is not valid: expected an integer ≥ {minimum}; {LAUNCH_HINT}.")
    return value


def choose_backend(requested: str, device: torch.device) -> str:
    """The process group's backend: NCCL for CUDA devices, gloo for CPUs (``requested="auto"``).

    Raises:
        ConfigError: NCCL asked for without CUDA GPUs (or for CPU tensors), or not built into torch.

    Example:
        >>> choose_backend("auto", torch.device("cpu"))
        'gloo'
    """
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if requested == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError(
                "distributed_backend='nccl' needs CUDA GPUs, and this machine has none (torch.cuda.is_available() is "
                "False): use distributed_backend='gloo', or 'auto', which picks gloo on CPUs."
            )
        if device.type != "cuda":
            raise ConfigError(
                f"distributed_backend='nccl' reduces CUDA tensors only, but device={str(device)!r}: use device='cuda' "
                "(or 'auto'), or distributed_backend='gloo'."
            )
        if not torch.distributed.is_nccl_available():
            raise ConfigError(
                "distributed_backend='nccl' is not built into this torch: install a CUDA build of torch, or use "
                "distributed_backend='gloo'."
            )
    return requested


def device_for(option: str, place: Environment) -> torch.device:
    """The device of the process at ``place`` for a config's ``device`` value: the GPU of its local rank on CUDA.

    Raises:
        ConfigError: one named GPU for several processes on a machine, a local rank without a GPU
            of its own, CUDA asked for without GPUs, or MPS (which torch.distributed cannot use).

    Example:
        >>> device_for("cpu", Environment(rank=1, local_rank=1, world_size=2, local_world_size=2))
        device(type='cpu')
    """
    if option == "cpu" or (option == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if option == "mps":
        raise ConfigError(
            "device='mps' cannot train in several processes: torch.distributed has no backend for MPS tensors. "
            "Use device='cpu', or train in one process."
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device={option!r} is not available: this machine has no usable CUDA GPU. Use device='cpu' or 'auto'."
        )
    named = torch.device("cuda" if option == "auto" else option)
    if named.index is not None:
        if place.local_world_size > 1:
            raise ConfigError(
                f"device={option!r} names one GPU, but {place.local_world_size} processes run on this machine and each "
                "needs its own: use device='cuda' (or 'auto'), and each process takes the GPU of its LOCAL_RANK."
            )
        return named
    count = torch.cuda.device_count()
    if place.local_rank >= count:
        raise ConfigError(
            f"LOCAL_RANK={place.local_rank} has no GPU of its own: this machine has {count} CUDA device(s). Start at most "
            f"{count} processes per machine (torchrun --nproc_per_node={count}), or use device='cpu'."
        )
    return torch.device("cuda", place.local_rank)
