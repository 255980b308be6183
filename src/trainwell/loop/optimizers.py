"""Optimizers: AdamW (fused where the device supports it) with sensible parameter groups."""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

import torch
from torch import nn

from trainwell.config import TrainConfig

logger = logging.getLogger("trainwell")


def param_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool = False) -> list[dict[str, Any]]:
    """Trainable parameters split into a decayed group and, unless asked otherwise, an undecayed one.

    Weight decay regularises weight matrices and kernels; on biases and the scales of
    normalisation layers (every parameter with fewer than 2 dimensions) it only shrinks values
    the model needs, so those are left undecayed by default (as in nanoGPT and timm).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if decay_bias_and_norm or weight_decay == 0:
        return [{"params": trainable, "weight_decay": weight_decay}]
    decayed = [p for p in trainable if p.dim() >= 2]
    undecayed = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``config`` asks for, over ``model``'s trainable parameters, peaking at ``lr``.

    AdamW and SGD use torch's fused implementation where the parameters' device supports it
    (one kernel for the whole update) and the multi-tensor (foreach) one otherwise, with
    ``config.weight_decay`` on the weights (:func:`param_groups`) and ``lr``.

    A factory (a callable ``config.optimizer``) receives the trainable parameters as a plain list
    and its optimizer is used as it is: its own lr, weight decay and other settings win, and
    ``lr`` is not applied (per-group options would also be refused by optimizers such as LBFGS).

    Raises:
        ConfigError: the factory returned something other than an optimizer of those parameters.
    """
    if callable(config.optimizer):
        return _from_factory(config.optimizer, [p for p in model.parameters() if p.requires_grad])
    groups = param_groups(model, config.weight_decay, config.decay_bias_and_norm)
    if config.optimizer == "adamw":
        make = lambda **fast: torch.optim.AdamW(groups, lr=lr, **fast)  # noqa: E731
    else:
        make = lambda **fast: torch.optim.SGD(
            groups, lr=lr, momentum=config.momentum, nesterov=config.momentum > 0, **fast
        )  # noqa: E731
    try:
        return make(fused=True)
    except (RuntimeError, ValueError) as unsupported:
        logger.debug("Fused %s unavailable (%s); using the foreach implementation.", config.optimizer, unsupported)
        return make(foreach=True)


def _from_factory(factory: Any, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    from trainwell.config import describe_callable
    from trainwell.exceptions import ConfigError

    optimizer = factory(parameters)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"optimizer={describe_callable(factory)} returned {type(optimizer).__name__}: expected a "
            "torch.optim.Optimizer built from the parameters it receives, e.g. "
            "optimizer=lambda params: torch.optim.SGD(params, lr=0.1)."
        )
    given = {id(p) for p in parameters}
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not optimized <= given or not optimized:
        raise ConfigError(
            f"optimizer={describe_callable(factory)} returned an optimizer of {len(optimized)} parameters, "
            f"{len(optimized - given)} of them not among the model's {len(given)} trainable ones: build it from the "
            "parameters the factory receives (optimizer=lambda params: torch.optim.SGD(params, lr=0.1))."
        )
    return optimizer


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` needs a closure that recomputes the loss (``torch.optim.LBFGS``).

    Example:
        >>> parameter = [torch.zeros(1, requires_grad=True)]
        >>> needs_closure(torch.optim.LBFGS(parameter)), needs_closure(torch.optim.SGD(parameter, lr=0.1))
        (True, False)
    """
    try:
        closure = inspect.signature(type(optimizer).step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` runs a fused kernel that can skip a step on the device (``found_inf``)."""
    return bool(optimizer.defaults.get("fused")) and getattr(optimizer, "_step_supports_amp_scaling", False)


def scaled_lr(config: TrainConfig, batch_size: int) -> float:
    """The peak lr for ``batch_size``: ``config.lr`` rescaled by ``config.lr_scaling`` when the batch departs from
    ``config.reference_batch_size`` (logged), capped at 1.

    Under torchrun, ``batch_size`` is the global batch: every process's batch together.

    Example:
        >>> scaled_lr(TrainConfig(lr=1e-3, reference_batch_size=64), 256)  # sqrt rule: 2x
        0.002
    """
    reference, rule = config.reference_batch_size, config.lr_scaling
    if reference is None or rule == "none" or batch_size == reference:
        return config.lr
    ratio = batch_size / reference
    scaled = config.lr * (ratio if rule == "linear" else math.sqrt(ratio))
    if scaled > 1.0:
        logger.warning("The %s-scaled lr %.3g exceeds 1; capping it at 1.", rule, scaled)
        scaled = 1.0
    logger.info(
        "Batch size %d differs from the reference %d: lr %.3g scaled (%s rule) to %.3g.",
        batch_size,
        reference,
        config.lr,
        rule,
        scaled,
    )
    return scaled
