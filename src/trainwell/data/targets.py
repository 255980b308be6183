"""Regression targets on a standard scale: learned from the training split, undone wherever a user reads a value.

A network's outputs start near zero with unit-order spread, and its lr and weight decay are tuned
for that scale: targets of mean 461 and deviation 237 (a price) take thousands of steps just to
reach the mean, and a loss in the tens of thousands makes gradient clipping act on every step.
So the data loaders standardise regression targets with the training split's mean and
standard deviation (per target column), the model learns them on that scale, and
:class:`TargetScaling` (kept in ``data.json``) turns every prediction and every reported
error back into the targets' own units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainwell.exceptions import DataError


@dataclass(frozen=True)
class TargetScaling:
    """Per-column mean and standard deviation of the training targets.

    ``scale`` maps targets in their own units to the standard scale the model learns;
    ``unscale`` maps the model's outputs (or standardised targets) back.

    Example:
        >>> scaling = TargetScaling.fit(torch.tensor([100.0, 200.0, 300.0]))
        >>> scaling.scale(torch.tensor([300.0])).tolist(), scaling.unscale(torch.tensor([[-1.0]])).tolist()
        ([1.0], [[100.0]])
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, targets: torch.Tensor, source: str = "the regression targets") -> TargetScaling:
        """The statistics of training targets ``(N,)`` or ``(N, columns)``.

        Raises:
            DataError: a target column holds one value in every training sample (nothing to
                learn), naming ``source``.
        """
        columns = targets.double().reshape(len(targets), -1)
        mean = columns.mean(dim=0)
        std = columns.std(dim=0) if len(columns) > 1 else torch.zeros(columns.shape[1], dtype=torch.float64)
        constant = [index for index, value in enumerate(std.tolist()) if not value > 1e-12]
        if constant:
            column = f" (column {constant[0]})" if columns.shape[1] > 1 else ""
            raise DataError(
                f"{source}{column}: a single value ({mean[constant[0]].item():g}) in every training sample, so there "
                "is nothing to learn. Check that the target is the column you meant, or add samples where it varies."
            )
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    def scale(self, values: torch.Tensor) -> torch.Tensor:
        """Targets in their own units -> the standard scale (the last dimension indexes columns)."""
        mean, std = self._stats(values)
        return (values - mean) / std

    def unscale(self, values: torch.Tensor) -> torch.Tensor:
        """Outputs on the standard scale -> the targets' own units."""
        mean, std = self._stats(values)
        return values * std + mean

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, plain: dict[str, Any] | None) -> TargetScaling | None:
        """The scaling ``to_dict`` described (None stays None: targets that were not scaled)."""
        if plain is None:
            return None
        return cls(tuple(float(v) for v in plain["mean"]), tuple(float(v) for v in plain["std"]))

    def _stats(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = values.dtype if values.is_floating_point() else torch.float32
        mean = torch.tensor(self.mean, dtype=dtype, device=values.device)
        std = torch.tensor(self.std, dtype=dtype, device=values.device)
        return mean, std


class Unscaled(torch.nn.Module):
    """A model whose outputs are turned back into the targets' units: what an exported graph of a regression run computes.

    Example:
        >>> model = Unscaled(torch.nn.Identity(), TargetScaling((500.0,), (100.0,)))
        >>> model(torch.tensor([[1.5]])).tolist()
        [[650.0]]
    """

    def __init__(self, model: torch.nn.Module, scaling: TargetScaling) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(scaling.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(scaling.std, dtype=torch.float32))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs) * self.std + self.mean


def scale_targets(
    train: torch.Tensor, *others: torch.Tensor, source: str = "the regression targets"
) -> tuple[list[torch.Tensor], TargetScaling]:
    """Standardise regression targets with the training split's statistics; return them and the scaling.

    Raises:
        DataError: the training targets hold a single value (``source`` names them).

    Example:
        >>> (train, val), scaling = scale_targets(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([7.0]))
        >>> train.tolist(), val.tolist(), scaling.to_dict()
        ([-1.0, 0.0, 1.0], [2.0], {'mean': [3.0], 'std': [2.0]})
    """
    scaling = TargetScaling.fit(train, source)
    return [scaling.scale(tensor).to(torch.float32) for tensor in (train, *others)], scaling


def target_scaling_of(info: Any) -> TargetScaling | None:
    """The scaling a :class:`~trainwell.data.DataInfo` records for its targets (None when they were not scaled)."""
    return TargetScaling.from_dict(getattr(info, "target_scaling", None))


# As for a table's numeric target (data/tabular.py): whole numbers of at most this many values read as labels.
MAX_LABEL_VALUES = 20


def looks_like_labels(targets: torch.Tensor, classes: int | None = None) -> bool:
    """Whether float ``targets`` look like class labels: whole numbers from 0, of few values (below ``classes`` when given).

    Example:
        >>> looks_like_labels(torch.tensor([0.0, 2.0, 1.0])), looks_like_labels(torch.tensor([0.5, 2.0]))
        (True, False)
    """
    if not targets.is_floating_point() or targets.numel() == 0:
        return False
    finite = targets[torch.isfinite(targets)]
    if finite.numel() != targets.numel() or not bool((finite == finite.round()).all()) or float(finite.min()) < 0:
        return False
    limit = classes if classes is not None else MAX_LABEL_VALUES + 1
    return float(finite.max()) < limit and len(finite.unique()) <= MAX_LABEL_VALUES
