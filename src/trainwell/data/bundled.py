"""Bundled datasets: real data that needs no download.

Tabular and image sets come with scikit-learn; the sunspot series with statsmodels
(``trainwell[series]``) and the word-language texts with pyspellchecker (``trainwell[text]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from trainwell.exceptions import DataError

BUNDLED = ("digits", "iris", "wine", "breast_cancer", "diabetes", "sunspots", "word_language")


@dataclass
class DataInfo:
    """What was learned from a dataset: the task, shapes, classes and preprocessing.

    Attributes:
        name: The dataset's name or path.
        task: ``"classification"`` or ``"regression"``.
        input_shape: Shape of one sample's inputs.
        num_classes: Number of classes (classification), else None.
        class_names: Readable class names, index = label.
        normalization: Statistics computed on the training split (e.g. ``mean``, ``std``).
        vocab_size: Size of the token vocabulary when inputs are token ids, else None.
        preprocessing: Everything else needed to prepare new inputs exactly as in training
            (vocabulary, categorical encodings, image size, ...), as plain data.
        target_scaling: Regression: the training targets' ``mean`` and ``std`` per column, with
            which the targets were standardised (:mod:`trainwell.data.targets`); predictions and
            reported errors are turned back into the targets' units with them. None when the
            targets were not scaled (classification).
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    class_names: list[str] = field(default_factory=list)
    normalization: dict[str, list[float]] = field(default_factory=dict)
    vocab_size: int | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    target_scaling: dict[str, list[float]] | None = None

    @property
    def num_outputs(self) -> int:
        return self.num_classes if self.task == "classification" else 1


@dataclass
class Splits:
    """Train, validation (and, where the format has one, test) tensors, plus what was learned."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    info: DataInfo
    test: tuple[torch.Tensor, torch.Tensor] | None = None

    def loaders(self, batch_size: int = 64, seed: int = 0, pin_memory: bool | None = None) -> tuple[Any, Any]:
        """A shuffled training TensorLoader (augmented when ``info.preprocessing`` asks) and an ordered validation one.

        ``pin_memory`` None pins when CUDA is available (see :class:`~trainwell.data.TensorLoader`).
        Both carry the regression targets' scaling (``loader.target_scaling``), with which
        ``fit`` reports val_mae and val_rmse in the targets' own units. A last training batch of
        a single sample is dropped (a different one each epoch, as the order is reshuffled):
        BatchNorm cannot train on one sample.
        """
        import torch

        from trainwell.data.augment import augment_from
        from trainwell.data.loader import TensorLoader
        from trainwell.data.targets import target_scaling_of

        pin = torch.cuda.is_available() if pin_memory is None else pin_memory
        scaling = target_scaling_of(self.info)
        lonely_last = len(self.train[0]) > batch_size and len(self.train[0]) % batch_size == 1
        return (
            TensorLoader(
                *self.train, batch_size=batch_size, shuffle=True, seed=seed, drop_last=lonely_last,
                transform=augment_from(self.info.preprocessing), pin_memory=pin, target_scaling=scaling,
            ),
            TensorLoader(*self.val, batch_size=max(batch_size, 256), shuffle=False, pin_memory=pin, target_scaling=scaling),
        )


def _sklearn_loader(name: str) -> Callable[..., Any]:
    from sklearn import datasets

    return {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
    }[name]


def load_bundled(name: str, val_fraction: float = 0.2, seed: int = 0, as_images: bool = False) -> Splits:
    """Load a bundled dataset, split it (reproducibly, without leakage) and standardise it.

    Features are standardised with the training split's mean and standard deviation only, so
    nothing about the validation data leaks into training; the statistics are returned in
    ``info.normalization``. Classification sets are split at random, stratified; the series
    is split in time (the most recent values validate; see :mod:`trainwell.data.series`).

    Args:
        name: One of ``digits``, ``iris``, ``wine``, ``breast_cancer``, ``diabetes`` (scikit-learn;
            diabetes is a regression, its targets standardised as :mod:`trainwell.data.targets` says),
            ``sunspots`` (needs ``trainwell[series]``), ``word_language`` (needs ``trainwell[text]``).
        val_fraction: Share of samples held out for validation, in (0, 1).
        seed: Seed of the split (the series' split in time needs none).
        as_images: Return ``digits`` as ``(N, 1, 8, 8)`` images instead of 64 features.

    Raises:
        DataError: an unknown name, a bad fraction, images asked of a set that has none, or the
            package that ships the data is missing (the message says what to install).

    Example:
        >>> splits = load_bundled("iris")
        >>> splits.info.num_classes, splits.train[0].shape
        (3, torch.Size([120, 4]))
    """
    if name not in BUNDLED:
        raise DataError(f"data={name!r} is not a bundled dataset: expected one of {', '.join(map(repr, BUNDLED))}.")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} is out of range: expected a number between 0 and 1 (exclusive).")
    if as_images and name != "digits":
        raise DataError(f"as_images=True is only for data='digits': {name!r} has no images.")
    if name == "sunspots":
        from trainwell.data.series import load_sunspots

        return load_sunspots(val_fraction)
    if name == "word_language":
        from trainwell.data.languages import load_word_language

        return load_word_language(val_fraction, seed)
    from sklearn.model_selection import train_test_split

    bunch = _sklearn_loader(name)()
    features = torch.as_tensor(bunch.data, dtype=torch.float32)
    if name == "diabetes":
        return _regression_splits(name, features, torch.as_tensor(bunch.target, dtype=torch.float32), val_fraction, seed)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_index, val_index = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=val_fraction, random_state=seed, stratify=labels.numpy()
    )
    (train_x, val_x), normalization = _standardized(features[train_index], features[val_index])
    info = DataInfo(
        name=name,
        task="classification",
        input_shape=tuple(features.shape[1:]),
        num_classes=int(labels.max()) + 1,
        class_names=[str(c) for c in getattr(bunch, "target_names", range(int(labels.max()) + 1))],
        normalization=normalization,
    )
    if as_images:
        train_x, val_x = train_x.reshape(-1, 1, 8, 8), val_x.reshape(-1, 1, 8, 8)
        info.input_shape = (1, 8, 8)
    logging.getLogger("trainwell").info(
        "Loaded %s (scikit-learn, bundled): %s samples (%s training, %s validation) of shape %s, %d classes.",
        name,
        f"{len(labels):,}",
        f"{len(train_index):,}",
        f"{len(val_index):,}",
        tuple(info.input_shape),
        info.num_classes,
    )
    return Splits(train=(train_x, labels[train_index]), val=(val_x, labels[val_index]), info=info)


def _standardized(train_x: torch.Tensor, val_x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], dict[str, list[float]]]:
    mean = train_x.mean(dim=0)
    std = train_x.std(dim=0)
    # Constant features (the always-blank border pixels of digits) would divide by zero.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return ((train_x - mean) / std, (val_x - mean) / std), {"mean": mean.tolist(), "std": std.tolist()}


def _regression_splits(name: str, features: torch.Tensor, targets: torch.Tensor, val_fraction: float, seed: int) -> Splits:
    """A random split of a regression table, features and targets standardised with the training split's statistics."""
    from sklearn.model_selection import train_test_split

    from trainwell.data.targets import scale_targets

    train_index, val_index = train_test_split(torch.arange(len(targets)).numpy(), test_size=val_fraction, random_state=seed)
    (train_x, val_x), normalization = _standardized(features[train_index], features[val_index])
    (train_y, val_y), scaling = scale_targets(targets[train_index], targets[val_index])
    info = DataInfo(
        name=name,
        task="regression",
        input_shape=tuple(features.shape[1:]),
        num_classes=None,
        normalization=normalization,
        target_scaling=scaling.to_dict(),
    )
    return Splits(train=(train_x, train_y), val=(val_x, val_y), info=info)
