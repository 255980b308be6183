"""Fully sharded data parallelism (``strategy="fsdp"``): torch's FSDP2, ``fully_shard``.

Under DDP every process holds the whole model, its gradients and its optimizer state. Under
FSDP each process holds a 1/N piece of each (a ``DTensor`` sharded on dimension 0): before a
layer runs, its weights are gathered from every process and freed after; its gradients are
reduce-scattered, each process keeping the piece its optimizer updates. What changes for a
run, and where it is handled:

- **the model**: :meth:`Sharding.shard` trains a sharded copy of the model passed to ``fit``,
  starting from rank 0's weights (as DDP does); every layer of a stack (each element of an
  ``nn.ModuleList`` or ``nn.Sequential``: a Transformer's encoder layers, an MLP's layers) is
  its own unit, gathered and freed on its own, the rest of the model one more unit. The model
  passed to ``fit`` keeps its weights where they are and receives the trained whole weights
  when ``fit`` ends (:meth:`Sharding.release`);
- **validation**: the processes' shares of the validation set may differ by a batch, and
  gathering weights needs every process, so validation gathers each unit's weights once and
  runs on whole weights (:meth:`Sharding.gathered`);
- **checkpoints**: sharded, one file per process, committed by one manifest
  (:mod:`trainwell.distributed.shards`);
- **out-of-memory splitting** is off: a failed forward leaves FSDP's state of the step undefined.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class Sharding:
    """FSDP2 for one session: shards a model over the processes and hands the whole weights back.

    Args:
        session: The session whose processes share the model.

    Attributes:
        mesh: The device mesh of every process (one dimension), on which weights are sharded.
    """

    def __init__(self, session: Any) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self.session = session
        self.mesh = init_device_mesh(session.device.type, (session.world_size,))

    def shard(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` sharded over the processes, starting from rank 0's weights and buffers.

        ``module`` itself is left as it is (its weights are rank 0's afterwards); the copy's
        weights are DTensors on this process's device. Build the optimizer on the copy.
        """
        from torch.distributed.fsdp import fully_shard

        tensors = [*module.parameters(), *module.buffers()]
        with torch.no_grad():
            for tensor in tensors:  # one at a time through the device (NCCL broadcasts CUDA tensors only)
                moved = tensor.to(self.session.device)
                torch.distributed.broadcast(moved, src=0)
                if moved is not tensor:
                    tensor.copy_(moved)
        # The copy's tensors share the storage of the module's (no second copy of the weights) but are
        # other objects: sharding moves and replaces the copy's, never the module's.
        shared = {
            id(t): nn.Parameter(t.detach(), t.requires_grad) if isinstance(t, nn.Parameter) else t.detach()
            for t in tensors
        }
        sharded = copy.deepcopy(module, shared)
        for unit in units(sharded):
            fully_shard(unit, mesh=self.mesh, reshard_after_forward=True)
        # Until training starts (resharded), every forward pass leaves the weights in pieces, so that
        # the optimizer is built on the pieces, not on gathered weights.
        return fully_shard(sharded, mesh=self.mesh, reshard_after_forward=True)

    def resharded(self, module: nn.Module) -> nn.Module:
        """``module`` ready to train: every unit's weights in pieces, the whole model's unit kept from forward to backward.

        Backward starts with the whole model's unit, so its weights stay gathered after forward
        (torch's recommendation for the root).
        """
        from torch.distributed.fsdp import FSDPModule

        for unit in module.modules():
            if isinstance(unit, FSDPModule):
                unit.reshard()
        module.set_reshard_after_forward(False, recurse=False)
        return module

    @contextlib.contextmanager
    def gathered(self, module: nn.Module) -> Iterator[None]:
        """Around validation: every unit's whole weights, gathered once and kept until the end.

        Inside, each process may run any number of forward passes without waiting for the others.
        """
        from torch.distributed.fsdp import FSDPModule

        sharded = [unit for unit in module.modules() if isinstance(unit, FSDPModule)]
        for unit in sharded:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.unshard()
        try:
            yield
        finally:
            for unit in sharded:
                unit.reshard()
                unit.set_reshard_after_forward(unit is not module, recurse=False)

    def release(self, original: nn.Module, sharded: nn.Module) -> nn.Module:
        """``original`` with the whole weights and buffers of the trained ``sharded`` copy (every process calls this)."""
        whole = {name: full_tensor(value) for name, value in sharded.state_dict().items()}
        original.load_state_dict(whole)
        return original


def units(module: nn.Module) -> list[nn.Module]:
    """The submodules sharded as units of their own: the layers of every stack, outermost first.

    A layer of a stack is an element of an ``nn.ModuleList`` or ``nn.Sequential`` that has
    trainable parameters; a unit's own stacks stay inside it. What no unit holds (embeddings,
    heads, norms outside stacks) belongs to the whole model's unit.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [type(unit).__name__ for unit in units(model)]
        ['Linear', 'Linear']
    """
    found: list[nn.Module] = []

    def visit(parent: nn.Module) -> None:
        stack = isinstance(parent, (nn.ModuleList, nn.Sequential))
        for child in parent.children():
            if stack and any(parameter.requires_grad for parameter in child.parameters()):
                found.append(child)
            else:
                visit(child)

    visit(module)
    return found


def full_tensor(value: Any) -> Any:
    """A DTensor's whole value as a plain tensor (gathered from every process when sharded); anything else as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value
