"""The machine: which device to use, seeding, and how much memory training takes."""

from __future__ import annotations

import random
import sys
from typing import Any

import torch

from trainwell.exceptions import ConfigError


def resolve_device(device: str) -> torch.device:
    """The torch device for a config's ``device`` value (``auto``: CUDA, then MPS, then CPU).

    Raises:
        ConfigError: CUDA or MPS was asked for but is not available.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} is not available: this machine has no usable CUDA GPU. Use device='cpu' or 'auto'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={device!r} is out of range: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}."
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} is not available on this machine. Use device='cpu' or 'auto'.")
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (when installed) and torch's random number generators."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)


def memory_metrics(device: torch.device) -> dict[str, int]:
    """Peak memory of the epoch that just ended.

    On CUDA, ``gpu_memory`` is the peak of allocated tensor memory and ``gpu_memory_reserved``
    the peak held by the caching allocator, both in bytes. Elsewhere ``memory`` is the process's
    peak resident set size in bytes.
    """
    if device.type == "cuda":
        return {
            "gpu_memory": torch.cuda.max_memory_allocated(device),
            "gpu_memory_reserved": torch.cuda.max_memory_reserved(device),
        }
    try:
        import resource
    except ImportError:  # Windows has no getrusage; report nothing rather than a wrong number.
        return {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return {"memory": peak if sys.platform == "darwin" else peak * 1024}


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def system_info(device: torch.device, precision: str) -> dict[str, Any]:
    """What a run ran on, cheap to gather: versions, device, precision and CPU threads.

    Returns:
        ``trainwell``, ``torch``, ``python`` versions, ``platform``, ``device``, ``precision``,
        ``threads`` (torch's intra-op CPU threads) and, on CUDA, ``device_name``, ``cuda`` (the
        CUDA version torch was built with) and ``gpu_memory_total`` in bytes.

    Example:
        >>> info = system_info(torch.device("cpu"), "fp32")
        >>> info["device"], info["precision"]
        ('cpu', 'fp32')
    """
    import platform

    from trainwell.version import __version__

    info: dict[str, Any] = {
        "trainwell": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "device": str(device),
        "precision": precision,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(device_name=properties.name, cuda=torch.version.cuda, gpu_memory_total=properties.total_memory)
    return info


def is_primary_process() -> bool:
    """Whether this process writes the run's files (checkpoints): the only one, or rank 0 under torchrun.

    Every decision to write shared files goes through this one function, so that running the same
    code in several processes needs no other change. The rank is the process group's when one is
    initialised (a program may start its processes without torchrun's ``RANK``), else ``RANK``'s.
    """
    import os

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"
