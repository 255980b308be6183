"""Tabular data from CSV/TSV or Parquet: numeric and categorical columns, a stated missing-value policy.

Columns whose every present value reads as a number are numeric; the others are categorical and
one-hot encoded with the categories seen in the training split (a category first met in
validation or test data encodes as all zeros). Everything learned is learned on the training
split only and kept in ``info.preprocessing`` as plain data, so :func:`encode_columns` prepares
new rows exactly as in training.

Missing values (empty cells, ``NA``, ``N/A``, ``NaN``, ``null``, ``None``, ``?``) follow
``missing``:

- ``"impute"`` (default): numeric cells get the training split's median; categorical cells get
  a category of their own, ``<missing>``. Counts are logged.
- ``"drop"``: rows with any missing feature are dropped (count logged).
- ``"error"``: refused, naming the first row and column.

Rows whose target is missing are dropped (count logged), except under ``"error"``. inf in a
numeric column is always refused.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.exceptions import ConfigError, DataError
from trainwell.files.reading import reading

if TYPE_CHECKING:
    from trainwell.data.bundled import Splits

logger = logging.getLogger("trainwell")

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MISSING_CATEGORY = "<missing>"
MISSING_POLICIES = ("impute", "drop", "error")
TASKS = ("auto", "classification", "regression")
# A numeric target with at most this many distinct integer values is read as class labels.
MAX_INTEGER_CLASSES = 20
# One-hot beyond this many categories is usually an identifier or free text, not a feature.
MANY_CATEGORIES = 100


def read_columns(path: Path) -> dict[str, list[Any]]:
    """The columns of a CSV, TSV or Parquet file: name -> values, None for a missing cell.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8, empty, has no header, duplicate
            column names, or rows of the wrong length (naming the line); Parquet without pyarrow
            installed, or a damaged Parquet file.
    """
    if not path.is_file():
        raise DataError(f"'{path}' does not exist or is not a file: expected a CSV or Parquet file.")
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with reading(path, DataError, "table"):
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = csv.reader(stream, delimiter=delimiter)
            header = next(rows, None)
            if not header:
                raise DataError(f"'{path}' is empty: expected a header line of column names, then one line per sample.")
            header = [name.strip() for name in header]
            duplicates = sorted({name for name in header if header.count(name) > 1})
            if duplicates:
                raise DataError(f"'{path}' has duplicate column names {duplicates}: every column needs its own name.")
            columns: dict[str, list[Any]] = {name: [] for name in header}
            for row in rows:
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"'{path}' line {rows.line_num} has {len(row)} fields but the header has {len(header)}: "
                        "check the quoting and the delimiter of that line."
                    )
                for name, value in zip(header, row):
                    value = value.strip()
                    columns[name].append(None if value.lower() in MISSING_TOKENS else value)
    if not next(iter(columns.values())):
        raise DataError(f"'{path}' has a header but no rows: expected one line per sample.")
    return columns


def _read_parquet(path: Path) -> dict[str, list[Any]]:
    try:
        from pyarrow import parquet
    except ImportError:
        raise DataError(
            f"reading '{path}' needs pyarrow, which is not installed: pip install 'trainwell[parquet]'."
        ) from None
    try:
        columns = parquet.read_table(path).to_pydict()
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"table '{path}' is not a readable Parquet file ({str(error).splitlines()[0]}): check the file.") from None
    if not columns or not next(iter(columns.values())):
        raise DataError(f"'{path}' has no rows: expected one row per sample.")
    return {
        name: [None if value is None or (isinstance(value, float) and math.isnan(value)) else value for value in values]
        for name, values in columns.items()
    }


def column_kind(values: list[Any]) -> str:
    """``numeric`` when every present value reads as a number, else ``categorical``."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, bool):
            return "categorical"
        if isinstance(value, (int, float)):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return "categorical"
    return "numeric"


def load_table(
    path: str | Path,
    target: str | None,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    task: str = "auto",
    missing: str = "impute",
) -> Splits:
    """Load a CSV/TSV/Parquet table and split it; the ``target`` column is what to predict.

    Args:
        path: The file (``.csv``, ``.tsv`` or ``.parquet``; Parquet needs ``trainwell[parquet]``).
        target: The column to predict.
        val_fraction: Share of rows held out for validation (stratified for classification).
        seed: Seed of the split.
        task: ``"auto"`` (a text target, or integers with at most 20 distinct values, is
            classification; other numbers are regression), ``"classification"`` or ``"regression"``.
        missing: Policy for missing feature values: ``"impute"``, ``"drop"`` or ``"error"``.

    Returns:
        :class:`~trainwell.data.Splits`: float features ``(N, F)``; labels ``(N,)`` int64 for
        classification; for regression, float32 values standardised with the training rows' mean
        and standard deviation (``info.target_scaling``, which turns predictions back into the
        column's units).

    Raises:
        DataError: a missing file, an unknown target column, inf in a numeric column, missing
            values under ``missing="error"``, a class with a single example, a target with a
            single class (or, for regression, a single value), a non-numeric target for regression.
        ConfigError: an unknown ``task`` or ``missing`` policy.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "pets.csv"
        ...     _ = path.write_text("weight,colour,kind\\n4,black,cat\\n30,,dog\\n5,white,cat\\n25,black,dog\\n")
        ...     splits = load_table(path, target="kind", val_fraction=0.5)
        >>> splits.info.class_names, [column["kind"] for column in splits.info.preprocessing["columns"]]
        (['cat', 'dog'], ['numeric', 'categorical'])
    """
    import torch

    from trainwell.data.bundled import DataInfo, Splits
    from trainwell.data.splits import check_several_classes, split_indices
    from trainwell.data.targets import TargetScaling
    from trainwell.exceptions import ConfigError

    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing={missing!r} is not a valid choice: expected one of {', '.join(map(repr, MISSING_POLICIES))}.")
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not a valid choice: expected one of {', '.join(map(repr, TASKS))}.")
    path = Path(path)
    columns = read_columns(path)
    target = _check_target(path, target, columns)
    kinds = {name: column_kind(values) for name, values in columns.items()}
    rows = np.arange(len(columns[target]))
    _refuse_inf(path, columns, kinds)

    target_missing = np.array([value is None for value in columns[target]])
    if target_missing.any():
        first = int(np.flatnonzero(target_missing)[0])
        if missing == "error":
            raise DataError(f"'{path}' has no value in the target column {target!r} at row {first} (line {first + 2}), and missing='error'.")
        logger.warning("Dropping %d row(s) of '%s' whose target %r is missing.", int(target_missing.sum()), path, target)
        rows = rows[~target_missing]

    features = [name for name in columns if name != target]
    if not features:
        raise DataError(f"'{path}' has only the target column {target!r}: expected at least one feature column.")
    rows = _apply_missing_policy(path, columns, features, rows, missing)

    task = _decide_task(path, target, columns[target], kinds[target], rows, task)
    raw_target = [columns[target][i] for i in rows]
    scaling = None
    if task == "classification":
        class_names, labels_array = _class_labels(raw_target, kinds[target])
        check_several_classes(
            class_names, f"the target column {target!r} of '{path}'",
            "Check that it is the column to predict (target=..., --target), or add rows of the other classes.",
        )
        labels = torch.from_numpy(labels_array)
        train_index, val_index = split_indices(labels_array, len(rows), val_fraction, seed, class_names, f"'{path}'")
    else:
        class_names = []
        values = torch.tensor([float(value) for value in raw_target], dtype=torch.float64)
        train_index, val_index = split_indices(None, len(rows), val_fraction, seed, source=f"'{path}'")
        # Standardised with the training rows' statistics (data/targets.py says why); data.json keeps them.
        scaling = TargetScaling.fit(values[train_index], f"the target column {target!r} of '{path}'")
        labels = scaling.scale(values).to(torch.float32)

    kept = {name: [columns[name][i] for i in rows] for name in features}
    preprocessing, normalization = fit_encoding(kept, {name: kinds[name] for name in features}, train_index, missing)
    preprocessing["target"] = target
    inputs = torch.from_numpy(encode_columns(kept, preprocessing, normalization))
    info = DataInfo(
        name=str(path),
        task=task,
        input_shape=(inputs.shape[1],),
        num_classes=len(class_names) if task == "classification" else None,
        class_names=class_names,
        normalization=normalization,
        preprocessing=preprocessing,
        target_scaling=scaling.to_dict() if scaling is not None else None,
    )
    logger.info(
        "Loaded '%s': %d rows (%d training, %d validation), %d features from %d columns, target %r (%s).",
        path, len(rows), len(train_index), len(val_index), inputs.shape[1], len(features), target, task,
    )
    train_index, val_index = torch.from_numpy(train_index), torch.from_numpy(val_index)
    return Splits(train=(inputs[train_index], labels[train_index]), val=(inputs[val_index], labels[val_index]), info=info)


def fit_encoding(
    columns: dict[str, list[Any]], kinds: dict[str, str], train_index: np.ndarray, missing: str
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Learn, from the training rows only, how to turn ``columns`` into standardised features.

    Returns:
        ``(preprocessing, normalization)`` as plain data. ``preprocessing``: ``format``,
        ``missing``, ``columns`` (per column: name, kind, and the median ``fill`` or the
        ``categories``) and ``feature_names``. ``normalization``: the ``mean`` and ``std`` of
        each encoded feature (0 and 1 for one-hot features, which are left as they are).
    """
    specs = []
    for name, values in columns.items():
        train_values = [values[i] for i in train_index]
        if kinds[name] == "numeric":
            present = np.array([float(v) for v in train_values if v is not None])
            fill = float(np.median(present)) if len(present) else 0.0
            specs.append({"name": name, "kind": "numeric", "fill": fill})
        else:
            categories = sorted({str(v) for v in train_values if v is not None})
            if any(v is None for v in train_values):
                categories.append(MISSING_CATEGORY)
            if len(categories) > MANY_CATEGORIES:
                logger.warning(
                    "Column %r has %d categories in the training split: one-hot encoding it adds as many features. "
                    "If it is an identifier or free text, drop it from the file.", name, len(categories),
                )
            specs.append({"name": name, "kind": "categorical", "categories": categories})
    preprocessing = {"format": "tabular", "missing": missing, "columns": specs, "feature_names": _feature_names(specs)}
    encoded = encode_columns({name: [columns[name][i] for i in train_index] for name in columns}, preprocessing)
    numeric = ~np.array(_one_hot_mask(specs), dtype=bool)
    mean = np.where(numeric, encoded.mean(axis=0), 0.0)
    std = encoded.std(axis=0, ddof=1) if len(encoded) > 1 else np.ones(encoded.shape[1])
    std = np.where(numeric & (std > 1e-8), std, 1.0)
    return preprocessing, {"mean": mean.tolist(), "std": std.tolist()}


def encode_columns(
    columns: dict[str, list[Any]], preprocessing: dict[str, Any], normalization: dict[str, list[float]] | None = None
) -> np.ndarray:
    """Features ``(N, F)`` float32 for raw ``columns``, as :func:`fit_encoding` learned them.

    Missing numeric values get the stored median; an unseen category encodes as all zeros.
    With ``normalization`` (``info.normalization``) the features are standardised as in training.
    """
    blocks = []
    for spec in preprocessing["columns"]:
        values = columns[spec["name"]]
        if spec["kind"] == "numeric":
            blocks.append(np.array([spec["fill"] if v is None else float(v) for v in values], dtype=np.float64).reshape(-1, 1))
        else:
            position = {category: i for i, category in enumerate(spec["categories"])}
            block = np.zeros((len(values), len(spec["categories"])))
            for row, value in enumerate(values):
                column = position.get(MISSING_CATEGORY if value is None else str(value))
                if column is not None:
                    block[row, column] = 1.0
            blocks.append(block)
    features = np.concatenate(blocks, axis=1)
    if normalization:
        features = (features - np.asarray(normalization["mean"])) / np.asarray(normalization["std"])
    return features.astype(np.float32)


def _feature_names(specs: list[dict[str, Any]]) -> list[str]:
    names = []
    for spec in specs:
        if spec["kind"] == "numeric":
            names.append(spec["name"])
        else:
            names.extend(f"{spec['name']}={category}" for category in spec["categories"])
    return names


def _one_hot_mask(specs: list[dict[str, Any]]) -> list[bool]:
    mask = []
    for spec in specs:
        mask.extend([False] if spec["kind"] == "numeric" else [True] * len(spec["categories"]))
    return mask


def _check_target(path: Path, target: str | None, columns: dict[str, list[Any]]) -> str:
    import difflib

    names = list(columns)
    if target is None:
        raise ConfigError(
            f"'{path}' is a table and needs a target column: pass target=... (--target on the command line), "
            f"one of {names}."
        )
    if target not in columns:
        close = difflib.get_close_matches(target, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"target={target!r} is not a column of '{path}': its columns are {names}.{hint}")
    return target


def _refuse_inf(path: Path, columns: dict[str, list[Any]], kinds: dict[str, str]) -> None:
    for name, values in columns.items():
        if kinds[name] != "numeric":
            continue
        for row, value in enumerate(values):
            if value is not None and math.isinf(float(value)):
                raise DataError(
                    f"'{path}' has an infinite value ({value}) at row {row} (line {row + 2}), column {name!r}: "
                    "inf would make every loss NaN. Fix the value, or leave the cell empty to treat it as missing."
                )


def _apply_missing_policy(path: Path, columns: dict[str, list[Any]], features: list[str], rows: np.ndarray, missing: str) -> np.ndarray:
    holes = {name: sum(columns[name][i] is None for i in rows) for name in features}
    holes = {name: count for name, count in holes.items() if count}
    if not holes:
        return rows
    if missing == "error":
        name = next(iter(holes))
        row = next(int(i) for i in rows if columns[name][i] is None)
        raise DataError(
            f"'{path}' has a missing value at row {row} (line {row + 2}), column {name!r}, and missing='error' "
            f"({sum(holes.values())} missing values in {len(holes)} column(s)). Use missing='impute' or "
            "missing='drop', or fill the cells."
        )
    if missing == "drop":
        complete = np.array([all(columns[name][i] is not None for name in holes) for i in rows], dtype=bool)
        logger.warning("missing='drop': dropping %d of %d rows of '%s' with missing values.", int((~complete).sum()), len(rows), path)
        return rows[complete]
    logger.info(
        "missing='impute': %s in '%s' (numeric: training median; categorical: category %r).",
        ", ".join(f"{count} in {name!r}" for name, count in holes.items()), path, MISSING_CATEGORY,
    )
    return rows


def _decide_task(path: Path, target: str, values: list[Any], kind: str, rows: np.ndarray, requested: str) -> str:
    present = [values[i] for i in rows]
    if requested == "regression":
        if kind != "numeric":
            example = next(v for v in present if v is not None and column_kind([v]) == "categorical")
            raise DataError(
                f"task='regression' needs a numeric target, but column {target!r} of '{path}' holds {example!r}: "
                "use task='classification' or pick a numeric column."
            )
        return "regression"
    if requested == "classification":
        return "classification"
    if kind == "categorical":
        decided = "classification"
    else:
        numbers = np.array([float(v) for v in present])
        distinct = np.unique(numbers)
        integral = bool(np.all(numbers == np.round(numbers)))
        decided = "classification" if integral and len(distinct) <= MAX_INTEGER_CLASSES else "regression"
    logger.info("Target %r of '%s' read as %s (task='auto'; set task=... to override).", target, path, decided)
    return decided


def _class_labels(values: list[Any], kind: str) -> tuple[list[str], np.ndarray]:
    """Class names (sorted; numerically for numbers) and each row's label index."""
    if kind == "numeric":
        numbers = sorted({float(v) for v in values})
        names = [f"{n:g}" for n in numbers]
        position = {n: i for i, n in enumerate(numbers)}
        return names, np.array([position[float(v)] for v in values], dtype=np.int64)
    names = sorted({str(v) for v in values})
    position = {name: i for i, name in enumerate(names)}
    return names, np.array([position[str(v)] for v in values], dtype=np.int64)
