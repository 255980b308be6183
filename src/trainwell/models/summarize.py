"""A model's layers, output shapes and parameter counts, as plain text: :func:`summary`.

(The module is not called ``summary``: a submodule of that name would shadow the function
``trainwell.models.summary`` once imported.)"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn


def summary(model: nn.Module, example_input: Any, run: Callable[[], Any] | None = None) -> str:
    """Describe ``model`` layer by layer by running it once on ``example_input``.

    Each row is a layer that holds parameters of its own or has no sub-layers: its name, type,
    output shape on ``example_input`` ("-" when the forward pass did not call it, as happens to
    an attention's output projection) and its parameter count. The model is run in eval mode
    and left in the mode it was in, with its weights and buffers untouched.

    Args:
        model: Any ``nn.Module``.
        example_input: One batch of inputs: a tensor, a tuple/list of tensors (passed as
            positional arguments) or a mapping (passed as keyword arguments).
        run: Instead of calling ``model(example_input)`` in eval mode without gradients, call this
            as it is (code that calls the model its own way, such as a training step with a
            recurrent state, in the mode and gradient setting the caller chose): the shapes are
            those of the model's first call.

    Returns:
        A multi-line table, ending with the total and trainable parameter counts.

    Example:
        >>> print(summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(3, 4)))
        Sequential: input (3, 4) -> output (3, 2)
        layer  type    output shape  parameters
        0      Linear  (3, 8)                40
        1      ReLU    (3, 8)                 0
        2      Linear  (3, 2)                18
        Parameters: 58 (trainable 58)
    """
    from trainwell.data.batches import forward, move_to

    rows = [(name, module) for name, module in model.named_modules() if _is_row(module) and name]
    if rows and any(True for _ in model.parameters(recurse=False)):
        # The model's own parameters (a Transformer's summary token): a row so the counts add up.
        rows.insert(0, ("(own)", model))
    shapes: dict[str, str] = {}

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes.setdefault(name, _shape(output))

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in rows if module is not model]
    called: list[Any] = []
    handles.append(
        model.register_forward_hook(lambda module, args, output: called.append(output) if not called else None)
    )
    parameter = next(model.parameters(), None)
    if parameter is not None:
        example_input = move_to(example_input, parameter.device)
    was_training = model.training
    fastpath = torch.backends.mha.get_fastpath_enabled()
    if run is None:
        model.eval()
    try:
        # No gradients (no autograd graph, no activation memory kept), and torch's fused inference
        # kernels for attention and Transformer layers switched off for this one pass: they
        # bypass the sub-layers, whose hooks would then report nothing.
        torch.backends.mha.set_fastpath_enabled(False)
        if run is None:
            with torch.no_grad():
                forward(model, example_input)
        else:
            run()
        output = called[0] if called else None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
        for handle in handles:
            handle.remove()
    table = [("layer", "type", "output shape", "parameters")]
    for name, module in rows:
        own = sum(p.numel() for p in module.parameters(recurse=False))
        table.append(
            (name, type(module).__name__, shapes.get(name, "-" if module is not model else _shape(output)), f"{own:,}")
        )
    widths = [max(len(row[column]) for row in table) for column in range(4)]
    lines = [f"{type(model).__name__}: input {_shape(example_input)} -> output {_shape(output)}"]
    for row in table:
        lines.append(
            "  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths)), row[3].rjust(widths[3])]).rstrip()
        )
    unique = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in unique)
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    lines.append(f"Parameters: {total:,} (trainable {trainable:,})")
    return "\n".join(lines)


def _is_row(module: nn.Module) -> bool:
    return not any(True for _ in module.children()) or any(True for _ in module.parameters(recurse=False))


def _shape(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, torch.Tensor):
        return str(tuple(value.shape))
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return f"packed {tuple(value.data.shape)}"
    if isinstance(value, (tuple, list)) and value:
        return _shape(value[0])
    if isinstance(value, Mapping) and value:
        return "{" + ", ".join(f"{key}: {_shape(item)}" for key, item in value.items()) + "}"
    return type(value).__name__
