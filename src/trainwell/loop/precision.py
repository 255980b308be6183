"""Mixed precision in one small object: autocast, (scaled) backward, optimizer step, state.

``auto`` picks what the hardware gains from: bf16 on CUDA devices with native bf16 (Ampere and
newer), fp16 with a GradScaler on older CUDA devices, and fp32 elsewhere. Combinations that do
not work are refused up front instead of failing or silently degrading mid-run.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from trainwell.exceptions import ConfigError

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """The concrete precision (``fp32``, ``bf16`` or ``fp16``) for ``precision`` on ``device``.

    Raises:
        ConfigError: fp16 off CUDA, or bf16 on a CUDA device without native bf16 support.
    """
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"precision='fp16' is not supported on device '{device}': fp16 training needs a CUDA "
            "device (for its GradScaler). Use precision='bf16' or 'fp32' here."
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ConfigError(
            f"precision='bf16' is not supported on device '{device}' "
            f"({torch.cuda.get_device_name(device)}): it lacks native bf16. Use precision='fp16' or 'auto'."
        )
    if precision not in _DTYPES:
        raise ConfigError(
            f"precision={precision!r} is not a valid choice: expected one of 'auto', 'fp32', 'bf16', 'fp16'."
        )
    return precision


class Precision:
    """Autocast, backward and step for one precision on one device.

    Args:
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        device: Where training runs.

    Example:
        >>> precision = Precision("fp32", torch.device("cpu"))
        >>> with precision.autocast():
        ...     loss = (torch.ones(2, requires_grad=True) * 3).sum()
        >>> precision.backward(loss)
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        self.device = torch.device(device)
        self.name = resolve_precision(precision, self.device)
        self.dtype = _DTYPES[self.name]
        # Only fp16 needs loss scaling: its 5-bit exponent underflows small gradients. bf16 has
        # fp32's exponent range, and a scaler there would only add work.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.name == "fp16" else None
        self._no_autocast = contextlib.nullcontext()

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The context to run the forward pass and loss in."""
        if self.dtype is None:
            return self._no_autocast
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``, scaled when a GradScaler is in use."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale (before clipping or inspecting them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Step the optimizer; with a GradScaler, skip steps with inf/NaN gradients and adapt the scale."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.name, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("precision") != self.name:
            raise ConfigError(
                f"precision={self.name!r} does not match the checkpoint's precision={state.get('precision')!r}: "
                "resume with the precision the run was started with."
            )
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, device='{self.device}')"
