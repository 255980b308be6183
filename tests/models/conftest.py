"""Checks every architecture must pass: gradients reach all parameters, training lowers the loss,
and a state_dict round trip reproduces the outputs. Tests get them as the ``checks`` fixture."""

from __future__ import annotations

import copy
import types

import pytest
import torch
from torch import nn


def assert_every_parameter_gets_a_gradient(
    model: nn.Module, inputs, targets, loss_fn=nn.functional.cross_entropy
) -> None:
    model.train()
    loss_fn(model(*inputs) if isinstance(inputs, tuple) else model(inputs), targets).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} got no gradient"


def short_training_losses(
    model: nn.Module, inputs, targets, steps: int = 30, lr: float = 3e-3, loss_fn=nn.functional.cross_entropy
) -> tuple[float, float]:
    """The loss before and after ``steps`` AdamW steps on one fixed batch, in eval mode."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        return loss_fn(model(*inputs) if isinstance(inputs, tuple) else model(inputs), targets)

    model.eval()
    with torch.no_grad():
        before = loss().item()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = loss().item()
    return before, after


def assert_state_dict_round_trip(model: nn.Module, fresh: nn.Module, inputs) -> None:
    """``fresh`` (same architecture, other weights) computes what ``model`` does after loading its state."""
    model.eval(), fresh.eval()
    call = (lambda m: m(*inputs)) if isinstance(inputs, tuple) else (lambda m: m(inputs))
    with torch.no_grad():
        assert not torch.allclose(call(model), call(fresh)), "the fresh model must start different"
        fresh.load_state_dict(copy.deepcopy(model.state_dict()))
        assert torch.equal(call(model), call(fresh))


@pytest.fixture
def checks() -> types.SimpleNamespace:
    return types.SimpleNamespace(
        every_parameter_gets_a_gradient=assert_every_parameter_gets_a_gradient,
        short_training_losses=short_training_losses,
        state_dict_round_trip=assert_state_dict_round_trip,
    )
