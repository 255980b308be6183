"""A model's weights loaded into a model: names and shapes checked, and every difference named."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainwell.exceptions import CheckpointError, CheckpointMismatchError


def load_model_state(model: Any, state: Mapping[str, Any], source: str, strict: bool = True) -> None:
    """``model.load_state_dict(state)``, refusing a different architecture with a message that names the differences.

    Raises:
        CheckpointMismatchError: names missing, unexpected and differently shaped entries.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a model state dict.")
    problems = describe_mismatch(model.state_dict(), state)
    if problems and (strict or "shape" in problems):
        raise CheckpointMismatchError(
            f"{source} does not fit the model {type(model).__name__}: {problems}. It was saved from a different "
            "architecture: build the model it was trained with (a run directory's model.txt describes it)."
        )
    model.load_state_dict(state, strict=strict)


def describe_mismatch(expected: Mapping[str, Any], found: Mapping[str, Any], limit: int = 8) -> str:
    """Say which entries of two state dicts differ: missing, unexpected, or of another shape ('' if none)."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    shapes = [
        f"{name} (checkpoint {tuple(found[name].shape)}, model {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in found and hasattr(found[name], "shape") and tuple(found[name].shape) != tuple(tensor.shape)
    ]
    parts = []
    for label, names in (
        ("missing from the checkpoint", missing),
        ("not in the model", unexpected),
        ("different shape", shapes),
    ):
        if names:
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)
