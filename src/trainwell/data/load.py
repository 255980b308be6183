"""``trainwell.data.load``: one call from a dataset name, a file, a folder or arrays to checked splits."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    from trainwell.data.bundled import Splits

logger = logging.getLogger("trainwell")

FORMATS = ("auto", "bundled", "idx", "tabular", "images", "text")
TABULAR_SUFFIXES = (".csv", ".tsv", ".parquet")
TEXT_SUFFIXES = (".jsonl", ".json", ".ndjson")


def load(
    name_or_path: str | Path | tuple[Any, Any],
    data_dir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    format: str = "auto",
    target: str | None = None,
    task: str = "auto",
    missing: str = "impute",
    image_size: int | Sequence[int] | None = None,
    augment: bool = False,
    bad_images: str = "error",
    text_column: str = "text",
    max_length: int | None = None,
    download: bool = True,
    as_images: bool = False,
) -> Splits:
    """Training and validation splits (and test, where the format has one), checked and ready to train.

    What is recognised (``format="auto"``):

    - a bundled name: ``digits``, ``iris``, ``wine``, ``breast_cancer`` (scikit-learn, no download);
    - ``mnist`` or ``fashion-mnist``: IDX files (raw or gzip) in ``data_dir``, downloaded into it
      (default: ``~/.cache/trainwell/<name>``) when absent; the t10k files are the test split;
    - a ``.csv``, ``.tsv`` or ``.parquet`` table, with ``target`` naming the column to predict;
    - a ``.jsonl`` of ``{"text": ..., "label": ...}`` records (a CSV of text needs ``format="text"``);
    - a folder of class folders of images (``root/<class>/*.png``);
    - a pair ``(inputs, targets)`` of arrays or tensors.

    The split is reproducible from ``seed`` and stratified for classification. Normalisation
    statistics come from the training split only and are kept, with everything else needed to
    prepare new inputs, in ``splits.info`` (save it with :func:`save_data_info`).

    Args:
        name_or_path: A dataset name, a file or folder path, or ``(inputs, targets)``.
        data_dir: Directory of the IDX files (mnist, fashion-mnist, or ``format="idx"``).
        val_fraction: Share held out for validation, in (0, 1).
        seed: Seed of the split.
        format: ``auto`` or one of ``bundled``, ``idx``, ``tabular``, ``images``, ``text``.
        target: Tables: the column to predict. Text: the label column (default ``label``).
        task: Tables: ``auto`` (inferred from the target), ``classification`` or ``regression``.
        missing: Tables: missing-value policy, ``impute`` (default), ``drop`` or ``error``.
        image_size: Images: resize to this size (int or ``(height, width)``); None: the first image's.
        augment: Images: random crop and flip of training batches.
        bad_images: Images: an undecodable file is an ``error`` (default) or is ``skip``-ped.
        text_column: Text: the column (key) holding the text.
        max_length: Text: tokens kept per text (None: the longest training text, at most 256).
        download: IDX datasets: download missing files (False: refuse instead).
        as_images: Bundled image data (digits): samples as ``(1, H, W)`` images instead of flat
            feature vectors, for models that read images (a CNN, a patch Transformer).

    Returns:
        :class:`~trainwell.data.Splits`; ``splits.loaders(batch_size)`` gives the loaders.

    Raises:
        ConfigError: an unknown dataset name or format, an option the format does not take.
        DataError: data that would fail or mislead training, with the file, column or index:
            see each format's loader.

    Example:
        >>> splits = load("iris", seed=0)
        >>> splits.info.num_classes, splits.train[0].shape, splits.val[0].shape
        (3, torch.Size([120, 4]), torch.Size([30, 4]))
        >>> train_loader, val_loader = splits.loaders(batch_size=32)
    """
    from trainwell.data.splits import check_finite, check_val_fraction

    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not a valid choice: expected one of {', '.join(map(repr, FORMATS))}.")
    check_val_fraction(val_fraction)
    if isinstance(name_or_path, (tuple, list)):
        splits = load_arrays(name_or_path, val_fraction, seed, task=task)
    else:
        chosen = resolve_format(name_or_path, format, data_dir)
        options = {
            "target": target,
            "missing": missing,
            "image_size": image_size,
            "augment": augment,
            "bad_images": bad_images,
            "text_column": text_column,
            "max_length": max_length,
            "data_dir": data_dir,
            "as_images": as_images,
        }
        _refuse_foreign_options(chosen, options)
        splits = _load_format(chosen, name_or_path, val_fraction, seed, task=task, download=download, **options)
    for split_name in ("train", "val", "test"):
        split = getattr(splits, split_name)
        if split is not None:
            check_finite(split[0], f"the {split_name} inputs of {splits.info.name!r}")
    return splits


def resolve_format(name_or_path: str | Path, format: str, data_dir: str | Path | None = None) -> str:
    """The format ``load`` will read ``name_or_path`` as.

    Raises:
        ConfigError: an unknown dataset name.
        DataError: a path that does not exist, or whose kind cannot be told.
    """
    from trainwell.data import bundled
    from trainwell.data.idx import IDX_DATASETS

    name = str(name_or_path)
    if format != "auto":
        return format
    if name in bundled.BUNDLED:
        return "bundled"
    if name in IDX_DATASETS:
        return "idx"
    path = Path(name)
    if not path.exists():
        known = [*bundled.BUNDLED, *IDX_DATASETS]
        if path.suffix or len(path.parts) > 1:
            raise ConfigError(f"data '{path}' does not exist: expected an existing file or folder (or a dataset name: {', '.join(known)}).")
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        raise ConfigError(
            f"data={name!r} is not a known dataset{f'. Did you mean {close[0]!r}? Known datasets' if close else ''}: "
            f"expected one of {', '.join(map(repr, known))}, or the path of "
            "a .csv/.tsv/.parquet table, a .jsonl of texts, or a folder of class folders of images."
        )
    if path.is_dir():
        return "idx" if is_idx_folder(path) else "images"
    suffix = path.suffix.lower()
    if suffix in TABULAR_SUFFIXES:
        return "tabular"
    if suffix in TEXT_SUFFIXES:
        return "text"
    raise DataError(
        f"data '{path}' has the suffix {suffix or '(none)'!r}, which does not tell its format: expected .csv, .tsv, "
        ".parquet (tables), .jsonl (texts) or a folder of images; or name the format (format=..., --data-format)."
    )


def is_idx_folder(path: Path) -> bool:
    """Whether a folder holds MNIST-format files by their names (``train-images-idx3-ubyte``, raw or ``.gz``).

    Example:
        >>> is_idx_folder(Path("."))
        False
    """
    from trainwell.data.idx import find_split_files

    return find_split_files(path, "train") is not None


def _load_format(chosen: str, name_or_path: str | Path, val_fraction: float, seed: int, **options: Any) -> Splits:
    name, data_dir = str(name_or_path), options["data_dir"]
    if chosen == "bundled":
        from trainwell.data.bundled import load_bundled

        return load_bundled(name, val_fraction=val_fraction, seed=seed, as_images=options["as_images"])
    if chosen == "idx":
        from trainwell.data.idx import IDX_DATASETS, IdxSource, load_idx

        if name in IDX_DATASETS:
            return load_idx(name, data_dir, val_fraction, seed, download=options["download"])
        # Any folder of MNIST-format files: no download, classes from the labels.
        folder = Path(data_dir) if data_dir is not None else Path(name)
        return load_idx(folder.name, folder, val_fraction, seed, download=False, source=IdxSource(files=(), mirrors=()))
    if chosen == "tabular":
        from trainwell.data.tabular import load_table

        return load_table(name, options["target"], val_fraction, seed, task=options["task"], missing=options["missing"])
    if chosen == "images":
        from trainwell.data.images import load_image_folder

        return load_image_folder(
            name, val_fraction, seed, image_size=options["image_size"], augment=options["augment"], bad_images=options["bad_images"]
        )
    from trainwell.data.text import load_text

    return load_text(
        name, val_fraction, seed, text_column=options["text_column"], label_column=options["target"] or "label", max_length=options["max_length"]
    )


# Options that only some formats use; giving one to another format is a mistake worth naming.
_FORMAT_OPTIONS = {
    "target": (None, ("tabular", "text")),
    "missing": ("impute", ("tabular",)),
    "image_size": (None, ("images",)),
    "augment": (False, ("images",)),
    "bad_images": ("error", ("images",)),
    "text_column": ("text", ("text",)),
    "max_length": (None, ("text",)),
    "data_dir": (None, ("idx",)),
    "as_images": (False, ("bundled",)),
}


def _refuse_foreign_options(chosen: str, options: dict[str, Any]) -> None:
    for option, value in options.items():
        default, formats = _FORMAT_OPTIONS[option]
        if value != default and chosen not in formats:
            raise ConfigError(
                f"{option}={value!r} does not apply to {chosen} data: it is an option of {' and '.join(formats)} data. "
                f"Remove it, or check the data's format."
            )


def load_arrays(pair: Sequence[Any], val_fraction: float = 0.2, seed: int = 0, task: str = "auto") -> Splits:
    """Split in-memory ``(inputs, targets)`` and standardise float inputs with training statistics.

    Integer targets are class labels (split stratified) unless ``task="regression"``; float
    targets are regression values, standardised with the training split's statistics
    (``info.target_scaling``), unless ``task="classification"``. Float targets that are all whole
    numbers of a few values get a warning: they look like class labels.

    Raises:
        DataError: not a pair, different counts, NaN or inf in the inputs (naming the index),
            classification targets of a single class, regression targets of a single value.
    """
    import numpy as np
    import torch

    from trainwell.data.bundled import DataInfo, Splits
    from trainwell.data.loader import _as_tensor
    from trainwell.data.splits import check_finite, check_several_classes, split_indices, standardize
    from trainwell.data.targets import looks_like_labels, scale_targets

    if len(pair) != 2:
        raise DataError(f"data is a sequence of {len(pair)} items: expected a pair (inputs, targets).")
    inputs, targets = _as_tensor(pair[0]), _as_tensor(pair[1])
    if inputs.dim() == 0 or len(inputs) != len(targets):
        raise DataError(
            f"data has {len(inputs) if inputs.dim() else 0} inputs but {len(targets)} targets: "
            "inputs and targets need one row per sample."
        )
    check_finite(inputs, "the inputs array")
    classification = task == "classification" or (task == "auto" and not targets.is_floating_point())
    if task == "auto" and not classification and looks_like_labels(targets):
        logger.warning(
            "The targets are float whole numbers of %d values (%s): read as regression values, as float targets are. "
            "If they are class labels, cast them to integers (targets.long(), y.astype('int64')) or pass "
            "task='classification'.", len(targets.unique()), ", ".join(f"{v:g}" for v in targets.unique()[:5].tolist()),
        )
    scaling = None
    if classification:
        if targets.is_floating_point():
            targets = targets.long()
        class_count = int(targets.max()) + 1
        labels = targets.numpy()
        if targets.dim() != 1 or int(targets.min()) < 0:
            raise DataError("classification targets must be class indices 0..C-1 of shape (N,): got other values or shape.")
        class_names = [str(label) for label in range(class_count)]
        check_several_classes(
            [class_names[label] for label in np.unique(labels)], "the targets array",
            "Check the targets, or add samples of the other classes.",
        )
        train_index, val_index = split_indices(labels, len(labels), val_fraction, seed, class_names, "the arrays")
    else:
        class_names, class_count = [], None
        train_index, val_index = split_indices(None, len(targets), val_fraction, seed, source="the arrays")
    train_index, val_index = torch.from_numpy(np.asarray(train_index)), torch.from_numpy(np.asarray(val_index))
    if not classification:
        # Standardised with the training split's statistics (data/targets.py says why); kept in info.
        (train_y, val_y), scaling = scale_targets(targets[train_index].double(), targets[val_index].double(), source="the targets array")
        targets = torch.empty(len(targets), *targets.shape[1:], dtype=torch.float32)
        targets[train_index], targets[val_index] = train_y, val_y
    train_x, val_x = inputs[train_index], inputs[val_index]
    normalization: dict[str, list[float]] = {}
    if inputs.is_floating_point():
        (train_x, val_x), normalization = standardize(train_x, val_x)
    info = DataInfo(
        name="arrays",
        task="classification" if classification else "regression",
        input_shape=tuple(inputs.shape[1:]),
        num_classes=class_count,
        class_names=class_names,
        normalization=normalization,
        preprocessing={"format": "arrays"},
        target_scaling=scaling.to_dict() if scaling is not None else None,
    )
    return Splits(train=(train_x, targets[train_index]), val=(val_x, targets[val_index]), info=info)
