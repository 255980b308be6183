"""Splitting and checking data: stratified reproducible splits, train-only statistics, finite inputs.

Every format's loader ends the same way: split the samples (stratified for classification,
reproducible from a seed), compute normalisation statistics on the training split only, and
refuse data that would fail or silently mislead training. Those steps live here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from trainwell.exceptions import DataError


def check_val_fraction(val_fraction: float) -> None:
    """Refuse a validation share outside (0, 1)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r} is out of range: expected a number between 0 and 1 (exclusive), e.g. 0.2.")


def split_indices(
    labels: np.ndarray | None,
    count: int,
    val_fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
    source: str = "the data",
) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: stratified by ``labels`` when given, reproducible from ``seed``.

    Args:
        labels: Integer class labels (stratify on them), or None (a plain shuffled split).
        count: Number of samples.
        val_fraction: Share held out for validation, in (0, 1).
        seed: Seed of the split.
        class_names: Names of the classes, for messages.
        source: What the samples are (a file, a folder), for messages.

    Returns:
        ``(train_index, val_index)``, each sorted.

    Raises:
        DataError: too few samples, or a class with a single example (which stratifying cannot
            place in both splits).

    Example:
        >>> train, val = split_indices(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 8, 0.5, seed=0)
        >>> len(train), len(val)
        (4, 4)
    """
    from sklearn.model_selection import train_test_split

    check_val_fraction(val_fraction)
    if count < 2:
        raise DataError(f"{source} has {count} sample(s): at least 2 are needed to split off a validation set.")
    stratify = None
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        lonely = classes[counts < 2]
        if len(lonely):
            label = int(lonely[0])
            name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)
            raise DataError(
                f"class {name!r} (label {label}) has a single example in {source}: a stratified split needs at "
                f"least 2 per class (one for training, one for validation). Add examples of it or remove it "
                f"({len(lonely)} class(es) have a single example)."
            )
        val_count = max(round(count * val_fraction), len(classes))
        if val_count >= count or count - val_count < len(classes):
            raise DataError(
                f"{source} has {count} samples in {len(classes)} classes: too few to hold out val_fraction="
                f"{val_fraction} with every class in both splits. Add data or change val_fraction."
            )
        stratify = labels
        test_size: Any = val_count
    else:
        test_size = max(1, round(count * val_fraction))
        if test_size >= count:
            raise DataError(f"{source} has {count} samples: too few to hold out val_fraction={val_fraction}.")
    train_index, val_index = train_test_split(np.arange(count), test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(train_index), np.sort(val_index)


def check_several_classes(class_names: Sequence[str], source: str, fix: str) -> None:
    """Refuse classification data with fewer than two classes: a classifier of one class learns nothing.

    Args:
        class_names: The classes found in the data.
        source: What holds the labels, e.g. ``"the target column 'kind' of 'pets.csv'"``.
        fix: What the user can do about it.

    Raises:
        DataError: naming ``source``, its one class and ``fix``.

    Example:
        >>> check_several_classes(["cat"], "the target column 'kind' of 'pets.csv'", "Add rows.")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainwell.exceptions.DataError: the target column 'kind' of 'pets.csv' holds a single class ('cat'): ...
    """
    if len(class_names) < 2:
        found = f"a single class ({class_names[0]!r})" if class_names else "no class at all"
        raise DataError(
            f"{source} holds {found}: a classifier needs at least two classes to tell apart, and one trained on a "
            f"single class always answers it. {fix}"
        )


def check_finite(inputs: torch.Tensor, source: str, columns: Sequence[str] | None = None) -> None:
    """Refuse NaN or inf in ``inputs``, naming the first bad sample (and column when known).

    Raises:
        DataError: naming ``source``, the sample index, the column and the value.

    Example:
        >>> check_finite(torch.tensor([[0.0, float("inf")]]), "x.csv", ["a", "b"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainwell.exceptions.DataError: x.csv has a non-finite value (inf) at row 0, column 'b': ...
    """
    if not inputs.is_floating_point():
        return
    bad = ~torch.isfinite(inputs)
    if not bool(bad.any()):
        return
    position = [int(i) for i in bad.nonzero()[0].tolist()]
    value = inputs[tuple(position)].item()
    where = f"row {position[0]}"
    if inputs.dim() == 2:
        where += f", column {columns[position[1]]!r}" if columns is not None else f", column {position[1]}"
    elif len(position) > 1:
        where += f", position {tuple(position[1:])}"
    raise DataError(
        f"{source} has a non-finite value ({value}) at {where}: "
        f"{int(bad.any(dim=tuple(range(1, inputs.dim()))).sum()) if inputs.dim() > 1 else int(bad.sum())} sample(s) "
        "hold NaN or inf, which would make every loss NaN. Fix or drop those samples."
    )


def standardize(
    train: torch.Tensor, *others: torch.Tensor, per_feature: bool = True
) -> tuple[list[torch.Tensor], dict[str, list[float]]]:
    """Standardise with the training split's mean and standard deviation only.

    Args:
        train: Training inputs, samples first.
        others: Validation/test inputs, scaled with the training statistics.
        per_feature: One mean/std per feature (tabular) or per channel of ``(N, C, ...)`` images
            (False: one scalar for everything).

    Returns:
        The scaled tensors (train first) and ``{"mean": [...], "std": [...]}``.
    """
    if per_feature and train.dim() > 2:
        dims = (0, *range(2, train.dim()))
        mean, std = train.mean(dim=dims), train.std(dim=dims)
        shape = (1, -1) + (1,) * (train.dim() - 2)
    elif per_feature:
        mean, std = train.mean(dim=0), train.std(dim=0)
        shape = (1, -1)
    else:
        mean, std = train.mean().reshape(1), train.std().reshape(1)
        shape = (1,) * train.dim()
    # Constant features (always-blank border pixels) would divide by zero.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    view_mean, view_std = mean.reshape(shape), std.reshape(shape)
    scaled = [(tensor - view_mean) / view_std for tensor in (train, *others)]
    return scaled, {"mean": mean.tolist(), "std": std.tolist()}


def check_labels_fit(splits: Any, num_outputs: int) -> None:
    """Refuse class labels that the model's ``num_outputs`` cannot predict, in any split.

    The trainer checks the first batch; this checks every label before training starts.

    Raises:
        DataError: naming the split, the sample index, the label and the fix.

    Example:
        >>> from trainwell.data import load
        >>> check_labels_fit(load("iris"), 2)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainwell.exceptions.DataError: the train split of 'iris' has label 2 at index ..., but the model has 2 outputs ...
    """
    info = splits.info
    if info.task != "classification":
        if num_outputs != 1:
            raise DataError(
                f"{info.name!r} is a regression task with one target, but the model has {num_outputs} outputs: "
                "give the model's last layer 1 output."
            )
        return
    binary_single_logit = num_outputs == 1 and (info.num_classes or 0) <= 2
    allowed = 2 if binary_single_logit else num_outputs
    for split_name in ("train", "val", "test"):
        split = getattr(splits, split_name, None)
        if split is None:
            continue
        labels = split[1]
        bad = (labels < 0) | (labels >= allowed)
        if bool(bad.any()):
            index = int(bad.nonzero()[0, 0])
            raise DataError(
                f"the {split_name} split of {info.name!r} has label {int(labels[index])} at index {index}, but the "
                f"model has {num_outputs} outputs (labels 0 to {allowed - 1}); the data has {info.num_classes} "
                f"classes. Give the model's last layer {info.num_classes} outputs."
            )
