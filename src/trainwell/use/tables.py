"""New table rows (CSV, TSV, Parquet; the scikit-learn tables by feature name) encoded as the run's training table was."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainwell.exceptions import DataError
from trainwell.use.prepared import Prepared, encode_targets, row_ids

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("trainwell")

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def read_table_rows(path: Path, info: Any) -> Prepared:
    columns = _read_table(path)
    inputs = encode_table(columns, info, f"'{path}'")
    target = info.preprocessing.get("target")
    targets = encode_targets(columns[target], info, f"column {target!r} of '{path}'") if target in columns else None
    return Prepared(inputs, row_ids(len(inputs)), targets)


def _read_table(path: Path) -> dict[str, list[Any]]:
    from trainwell.data.tabular import read_columns

    if path.is_dir() or path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(
            f"input '{path}' is not a table: the run was trained on rows of features, so it reads .csv, .tsv or "
            ".parquet files with the training columns."
        )
    return read_columns(path)


def encode_table(columns: dict[str, list[Any]], info: Any, source: str) -> torch.Tensor:
    """Features of raw table columns, with the training split's medians, categories and statistics."""
    import math

    import torch

    from trainwell.data.tabular import MISSING_TOKENS, encode_columns

    preprocessing = info.preprocessing
    specs = preprocessing["columns"]
    require_columns(columns, [spec["name"] for spec in specs], source, preprocessing.get("target"))
    policy = preprocessing.get("missing", "impute")
    cleaned: dict[str, list[Any]] = {}
    unseen: dict[str, int] = {}
    for spec in specs:
        name = spec["name"]
        values = [
            None if value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TOKENS) else value
            for value in columns[name]
        ]
        values = [None if isinstance(value, float) and math.isnan(value) else value for value in values]
        holes = [row for row, value in enumerate(values) if value is None]
        if holes and policy != "impute":
            raise DataError(
                f"{source} has a missing value at row {holes[0]}, column {name!r} ({len(holes)} in that column), but the "
                f"run was trained with missing={policy!r}, so it never learned a value for holes: fill the cells."
            )
        if spec["kind"] == "numeric":
            values = [_number(value, row, name, source) for row, value in enumerate(values)]
        else:
            known = set(spec["categories"])
            count = sum(value is not None and str(value).strip() not in known for value in values)
            if count:
                unseen[name] = count
            values = [None if value is None else str(value).strip() for value in values]
        cleaned[name] = values
    if unseen:
        logger.warning(
            "%s: categories unseen in training encode as all zeros, as in training's validation: %s.",
            source,
            ", ".join(f"{count} in {name!r}" for name, count in unseen.items()),
        )
    return torch.from_numpy(encode_columns(cleaned, preprocessing, info.normalization))


def _number(value: Any, row: int, column: str, source: str) -> float | None:
    import math

    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataError(
            f"{source} has {value!r} at row {row}, column {column!r}, which was numeric in training: give a number "
            "(or leave the cell empty for a missing value)."
        ) from None
    if math.isinf(number):
        raise DataError(
            f"{source} has an infinite value at row {row}, column {column!r}: give a finite number or leave it empty."
        )
    return number


def require_columns(columns: dict[str, Any], required: list[str], source: str, target: str | None = None) -> None:
    missing = [name for name in required if name not in columns]
    if not missing:
        return
    # Suggest only columns the model does not already read: a misspelt name, not a neighbour.
    spare = [name for name in columns if name not in set(required) and name != target]
    hints = []
    for name in missing[:3]:
        close = difflib.get_close_matches(name, spare, n=1)
        if close:
            hints.append(f"{close[0]!r} for {name!r}?")
    hint = f" Did you mean {' '.join(hints)}" if hints else ""
    target_note = f" (the target column {target!r} is optional)" if target else ""
    raise DataError(
        f"{source} lacks {len(missing)} column(s) that the model was trained on: {_some(missing)}; it has {_some(list(columns))}. "
        f"Give every training feature column{target_note}.{hint}"
    )


def _some(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def as_columns(values: dict[str, Any]) -> dict[str, list[Any]]:
    return {
        str(name): list(column) if isinstance(column, (list, tuple, np.ndarray)) else [column]
        for name, column in values.items()
    }


# ------------------------------------------------------------------------------- scikit-learn bundled features


def read_features(path: Path, info: Any) -> Prepared:
    columns = _read_table(path)
    inputs = features_from_columns(columns, info, f"'{path}'")
    targets = encode_targets(columns["target"], info, f"column 'target' of '{path}'") if "target" in columns else None
    return Prepared(inputs, row_ids(len(inputs)), targets)


def feature_names(name: str) -> list[str]:
    """The feature names of a scikit-learn bundled set, in the order training used them."""
    from trainwell.data.bundled import _sklearn_loader

    return [str(feature) for feature in _sklearn_loader(name)().feature_names]


def features_from_columns(columns: dict[str, list[Any]], info: Any, source: str) -> torch.Tensor:
    import torch

    names = feature_names(info.name)
    require_columns(columns, names, source, "target")
    features = np.array(
        [[_number(value, row, name, source) for row, value in enumerate(columns[name])] for name in names],
        dtype=np.float64,
    ).T
    holes = np.argwhere(np.isnan(features))
    if len(holes):
        row, column = holes[0]
        raise DataError(
            f"{source} has no value at row {row}, column {names[column]!r}: the {info.name} features have no missing values."
        )
    # In float32, as training standardised them, so the results are bit-identical.
    mean = torch.tensor(info.normalization["mean"], dtype=torch.float32)
    std = torch.tensor(info.normalization["std"], dtype=torch.float32)
    scaled = (torch.from_numpy(features).to(torch.float32) - mean) / std
    return scaled.reshape(len(scaled), *info.input_shape)
