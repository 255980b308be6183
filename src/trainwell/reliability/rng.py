"""The random number generators of a run: Python's, NumPy's and torch's (CUDA's too), saved and put back.

A resumed run draws the same dropout masks, shuffles and augmentations as the run that was never
stopped only if every generator continues from where it was; :class:`RandomState` is that part
of a checkpoint, restored after every other part, so that nothing draws after it.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import torch

logger = logging.getLogger("trainwell")


class RandomState:
    """The global random generators as one stateful part of a run.

    Args:
        device: The training device: CUDA's generators are included on CUDA.

    Example:
        >>> state = RandomState(torch.device("cpu"))
        >>> saved = state.state_dict()
        >>> first = torch.rand(1)
        >>> state.load_state_dict(saved)
        >>> torch.equal(torch.rand(1), first)
        True
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device

    def state_dict(self) -> dict[str, Any]:
        return rng_state(self.device)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        set_rng_state(state, self.device)


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators (CUDA's when training on CUDA)."""
    import numpy

    numpy_state = numpy.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype("int64")),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device is not None and device.type == "cuda" else None,
    }
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned."""
    import numpy

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    numpy.random.set_state(
        {
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype("uint32"), "pos": saved["pos"]},
            "has_gauss": saved["has_gauss"],
            "gauss": saved["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and device is not None and device.type == "cuda":
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            logger.warning(
                "The checkpoint has CUDA random states for %d devices, this machine has %d: CUDA randomness "
                "(dropout on the GPU) will differ from the uninterrupted run.",
                len(cuda),
                torch.cuda.device_count(),
            )
