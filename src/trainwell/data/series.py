"""Time series as forecasting tasks: windows of the past, the next value as target, split in time.

The bundled series is the yearly mean sunspot number, 1700-2008 (309 values), shipped with
statsmodels (``statsmodels.datasets.sunspots``); install it with ``pip install 'trainwell[series]'``.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import torch

from trainwell.exceptions import DataError

# 20 years covers almost two solar cycles (about 11 years each). Measured with a linear
# autoregression on the same split: windows of 10, 20 and 30 years gave validation MAEs of
# 0.59, 0.57 and 0.61 times the naive forecast's, so 20 is long enough and no longer.
SUNSPOTS_WINDOW = 20


def load_sunspots(val_fraction: float = 0.2, window: int = SUNSPOTS_WINDOW):
    """The yearly sunspot numbers as a one-step-ahead forecasting task (see :func:`forecasting_splits`)."""
    years, values = _read_statsmodels_csv("sunspots", "YEAR", "SUNACTIVITY")
    return forecasting_splits(
        torch.tensor(values, dtype=torch.float32),
        window,
        val_fraction,
        name="sunspots",
        extra={
            "source": "statsmodels.datasets.sunspots (yearly, 1700-2008)",
            "first_val_year": int(years[_split_index(len(values), window, val_fraction)]),
        },
    )


def forecasting_splits(
    series: torch.Tensor, window: int, val_fraction: float, name: str = "series", extra: dict | None = None
):
    """Cut ``series`` into (past ``window`` values → next value) samples, split in time.

    The validation set is the last ``val_fraction`` of the targets, so no training target lies
    in the validation period. Values (inputs and targets) are standardised with the mean and
    standard deviation of the training period alone (every value before the first validation
    target); ``info.target_scaling`` holds them too, so ``val_mae`` is reported in the series'
    own units. The naive forecast (the last value of each window) is scored on the validation
    set in those units: ``info.preprocessing["naive_val_mae"]``.

    Args:
        series: The values, oldest first, shape ``(T,)``.
        window: Past values per sample.
        val_fraction: Share of the samples, the most recent ones, held out for validation.
        name: The dataset's name.
        extra: More facts for ``info.preprocessing``.

    Returns:
        Splits whose inputs are ``(N, window, 1)`` and targets ``(N, 1)``.

    Raises:
        DataError: the series is too short for the window and the split.

    Example:
        >>> splits = forecasting_splits(torch.arange(50.0), window=5, val_fraction=0.2)
        >>> splits.train[0].shape, splits.val[0].shape, splits.info.task
        (torch.Size([36, 5, 1]), torch.Size([9, 5, 1]), 'regression')
    """
    from trainwell.data.bundled import DataInfo, Splits

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} is out of range: expected a number between 0 and 1 (exclusive).")
    samples = len(series) - window
    split = _split_index(len(series), window, val_fraction)
    if window < 1 or samples < 2 or not window < split < len(series):
        raise DataError(
            f"a series of {len(series)} values cannot give both splits with window={window} and "
            f"val_fraction={val_fraction}: use a shorter window or a longer series."
        )
    history = series[:split]
    mean, std = history.mean(), history.std().clamp(min=1e-8)
    scaled = (series - mean) / std
    inputs = scaled.unfold(0, window, 1)[:samples].unsqueeze(-1)
    targets = scaled[window:].unsqueeze(-1)
    cut = split - window
    val_inputs, val_targets = inputs[cut:], targets[cut:]
    naive = (val_inputs[:, -1] - val_targets).abs().mean().item() * std.item()
    info = DataInfo(
        name=name,
        task="regression",
        input_shape=(window, 1),
        num_classes=None,
        normalization={"mean": [mean.item()], "std": [std.item()]},
        preprocessing={"window": window, "naive_val_mae": naive, "first_val_index": split, **(extra or {})},
        target_scaling={"mean": [mean.item()], "std": [std.item()]},
    )
    return Splits(train=(inputs[:cut], targets[:cut]), val=(val_inputs, val_targets), info=info)


def _split_index(length: int, window: int, val_fraction: float) -> int:
    """Index in the series of the first validation target."""
    samples = length - window
    return window + samples - max(1, round(samples * val_fraction))


def _read_statsmodels_csv(dataset: str, *columns: str) -> tuple[list[float], ...]:
    """Columns of a CSV file that statsmodels ships, read without importing statsmodels (or pandas)."""
    found = importlib.util.find_spec("statsmodels")
    if found is None or not found.submodule_search_locations:
        raise DataError(
            f"data={dataset!r} needs the statsmodels package, which ships this series: "
            "install it with pip install 'trainwell[series]'."
        )
    path = Path(found.submodule_search_locations[0]) / "datasets" / dataset / f"{dataset}.csv"
    if not path.is_file():
        raise DataError(
            f"data={dataset!r}: statsmodels is installed but has no {path.name}; reinstall it with pip install 'trainwell[series]'."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return tuple([float(row[column]) for row in rows] for column in columns)
