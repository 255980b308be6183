"""MLP: the network for tabular data and flattened small images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainwell.exceptions import ConfigError
from trainwell.models.checks import check_choice, check_dropout
from trainwell.models.init import init_weights

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


class MLP(nn.Module):
    """Linear → BatchNorm1d → activation → Dropout per hidden layer, then a plain Linear.

    Inputs with more than two dimensions (images) are flattened per sample.

    Args:
        dims: Layer widths from input to output, e.g. ``[784, 256, 128, 10]``.
        dropout: Dropout probability after each hidden layer.
        batch_norm: Normalise each hidden layer's pre-activations.
        activation: One of ``relu``, ``gelu``, ``silu``, ``tanh``, ``leaky_relu``.

    Example:
        >>> model = MLP([784, 256, 128, 10])
        >>> model(torch.randn(32, 1, 28, 28)).shape
        torch.Size([32, 10])
    """

    def __init__(
        self, dims: Sequence[int], dropout: float = 0.3, batch_norm: bool = True, activation: str = "relu"
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2 or any(d < 1 for d in dims):
            raise ConfigError(f"dims={dims} is invalid: expected at least two positive widths, input first, e.g. [64, 128, 10].")
        check_dropout(dropout)
        check_choice("activation", activation, ACTIVATIONS)
        self.dims = dims
        layers: list[nn.Module] = []
        for width_in, width_out in zip(dims[:-2], dims[1:-1]):
            layers.append(nn.Linear(width_in, width_out, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-2], dims[-1]))
        self.network = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() > 2:
            inputs = inputs.flatten(1)
        return self.network(inputs)
