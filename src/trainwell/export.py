"""Weights in safetensors: a tensor-only format any framework reads without trusting the file.

Needs the ``safetensors`` package: ``pip install 'trainwell[safetensors]'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trainwell.checkpoint import describe_mismatch, first_line, fsync_directory
from trainwell.exceptions import CheckpointError, CheckpointMismatchError


def save_safetensors(path: str | Path, model: Any, metadata: Mapping[str, str] | None = None) -> Path:
    """Export ``model``'s weights to a safetensors file, atomically.

    safetensors holds tensors only (no pickle at all), so any framework can read the weights
    without trusting the file. Needs the ``safetensors`` package (``pip install 'trainwell[safetensors]'``).

    Args:
        path: The ``.safetensors`` file to write.
        model: The ``nn.Module`` to export (tied weights are stored once).
        metadata: Strings to store in the file's header.

    Returns:
        The path written.

    Raises:
        CheckpointError: safetensors is not installed, or the file could not be written.

    Example:
        >>> path = trainwell.export.save_safetensors("model.safetensors", model)  # doctest: +SKIP
        >>> trainwell.export.load_safetensors(path, model)  # doctest: +SKIP
    """
    safetensors_torch = _safetensors()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        safetensors_torch.save_model(model, str(temporary), metadata=dict(metadata) if metadata else None)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise CheckpointError(f"could not write '{path}': {error}") from error
    finally:
        temporary.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path


def load_safetensors(path: str | Path, model: Any) -> None:
    """Load weights exported by :func:`save_safetensors` (or any safetensors file) into ``model``.

    Raises:
        CheckpointError: the file is missing or unreadable, or safetensors is not installed.
        CheckpointMismatchError: parameter names or shapes differ from the model's.
    """
    safetensors_torch = _safetensors()
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"'{path}' does not exist or is not a file: give the path of a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as file:
            shapes = {name: SimpleNamespace(shape=tuple(file.get_slice(name).get_shape())) for name in file.keys()}
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise CheckpointError(f"'{path}' is not a readable safetensors file: {first_line(error)}") from error
    # Tied weights are stored once: a name absent from the file is missing only if no name that
    # shares its storage is present. Everything is checked before the model is touched.
    state = model.state_dict()
    stored = {state[name].data_ptr() for name in shapes if name in state}
    expected = {name: tensor for name, tensor in state.items() if name in shapes or tensor.data_ptr() not in stored}
    problems = describe_mismatch(expected, shapes)
    if problems:
        raise CheckpointMismatchError(
            f"'{path}' does not fit the model {type(model).__name__}: {problems}. It holds the weights of a different architecture."
        )
    safetensors_torch.load_model(model, str(path), strict=False)


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise CheckpointError(
            "safetensors export needs the safetensors package, which is not installed: "
            "pip install 'trainwell[safetensors]' (or pip install safetensors)."
        ) from None
    return safetensors.torch
