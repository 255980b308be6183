"""Inputs prepared for a trained model: what a reader of new data returns, and how labels are encoded as in training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import DataError

if TYPE_CHECKING:
    import torch


@dataclass
class Prepared:
    """Inputs ready for the model, with what identifies each sample and, when the file had them, labels.

    Attributes:
        inputs: The model's inputs, ``(N, ...)``, prepared as in training.
        ids: One name per sample: a row number, a file path relative to the input, a line number.
        targets: Labels (class indices, int64) or values (float32) when the input carried them, else None.
    """

    inputs: torch.Tensor
    ids: list[str]
    targets: torch.Tensor | None = None


def encode_targets(values: list[Any], info: Any, source: str) -> torch.Tensor:
    """Class indices of labels given by name (or by index), or float values for regression.

    Regression values are standardised as the training targets were (``info.target_scaling``).
    """
    import torch

    from trainwell.data.targets import target_scaling_of

    if info.task != "classification":
        try:
            numbers = torch.tensor([float(value) for value in values], dtype=torch.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"{source} holds values that are not numbers: regression targets must be numbers."
            ) from None
        scaling = target_scaling_of(info)
        return (scaling.scale(numbers) if scaling is not None else numbers).to(torch.float32)
    index = {name: position for position, name in enumerate(info.class_names)}
    labels = []
    for row, value in enumerate(values):
        text = "" if value is None else str(value).strip()
        if text not in index:
            try:
                text = f"{float(text):g}"
            except ValueError:
                pass
        if text not in index:
            raise DataError(
                f"{source} has the label {value!r} at row {row}, which is not a class of the run: its classes are "
                f"{info.class_names}."
            )
        labels.append(index[text])
    return torch.tensor(labels, dtype=torch.int64)


def row_ids(count: int) -> list[str]:
    return [str(row) for row in range(count)]
