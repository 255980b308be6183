import importlib.util

import pytest
import torch

from trainwell import DataError
from trainwell.data import load_bundled
from trainwell.data.series import forecasting_splits


def test_windows_targets_and_a_split_in_time():
    series = torch.arange(100.0)
    splits = forecasting_splits(series, window=10, val_fraction=0.2)
    (train_x, train_y), (val_x, val_y) = splits.train, splits.val
    assert train_x.shape == (72, 10, 1) and val_x.shape == (18, 10, 1) and train_y.shape == (72, 1)
    mean, std = splits.info.normalization["mean"][0], splits.info.normalization["std"][0]

    def restore(values):
        return values * std + mean

    # Each target is the value right after its window.
    assert torch.allclose(restore(train_x[5, :, 0]), torch.arange(5.0, 15.0), atol=1e-4)
    assert restore(train_y[5]).item() == pytest.approx(15.0, abs=1e-4)
    # Every training target comes before every validation target: no leakage across the split.
    assert restore(train_y).max().item() < restore(val_y).min().item()
    assert splits.info.preprocessing["first_val_index"] == 82


def test_standardised_with_the_training_period_only():
    series = torch.cat([torch.zeros(50), 1000 * torch.ones(50)])
    splits = forecasting_splits(series, window=5, val_fraction=0.4)
    history = series[: splits.info.preprocessing["first_val_index"]]
    assert splits.info.normalization["mean"][0] == pytest.approx(history.mean().item())
    assert splits.info.normalization["mean"][0] < 500  # the validation period's level never entered it


def test_naive_forecast_error_is_reported_in_val_mae_units():
    # val_mae is reported in the series' own units (target_scaling), and so is the naive forecast's error.
    series = torch.arange(60.0) ** 1.5
    splits = forecasting_splits(series, window=4, val_fraction=0.25)
    val_x, val_y = splits.val
    std = splits.info.target_scaling["std"][0]
    assert splits.info.target_scaling == splits.info.normalization
    assert splits.info.preprocessing["naive_val_mae"] == pytest.approx((val_x[:, -1] - val_y).abs().mean().item() * std)


def test_a_series_too_short_is_refused():
    with pytest.raises(DataError, match="cannot give both splits"):
        forecasting_splits(torch.arange(5.0), window=5, val_fraction=0.2)


def test_sunspots_from_statsmodels():
    splits = load_bundled("sunspots")
    info = splits.info
    assert (info.name, info.task, info.input_shape, info.num_outputs) == ("sunspots", "regression", (20, 1), 1)
    assert len(splits.train[0]) + len(splits.val[0]) == 309 - 20
    assert info.preprocessing["first_val_year"] == 1951
    assert 15 < info.preprocessing["naive_val_mae"] < 35  # sunspot numbers


def test_missing_statsmodels_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "statsmodels" else real(name, *a))
    with pytest.raises(DataError, match=r"pip install 'trainwell\[series\]'"):
        load_bundled("sunspots")
