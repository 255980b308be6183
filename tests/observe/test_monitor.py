import math

import pytest

from trainwell.callbacks import Monitor


def test_min_mode_tracks_best_and_patience():
    monitor = Monitor("val_loss", patience=2)
    assert [monitor.update(v, epoch) for epoch, v in enumerate([1.0, 0.8, 0.9, 0.85], start=1)] == [True, True, False, False]
    assert (monitor.best, monitor.best_epoch, monitor.exhausted) == (0.8, 2, True)


def test_max_mode_and_min_delta():
    monitor = Monitor("val_accuracy", mode="max", min_delta=0.01, patience=1)
    assert monitor.update(0.90)
    assert not monitor.update(0.905)  # better, but by less than min_delta
    assert monitor.exhausted
    assert monitor.update(0.95) and not monitor.exhausted


def test_nan_is_never_an_improvement():
    monitor = Monitor("val_loss")
    assert not monitor.update(math.nan)
    assert monitor.best is None


def test_no_patience_never_exhausts():
    monitor = Monitor("val_loss", patience=None)
    for value in range(10):
        monitor.update(float(value))
    assert not monitor.exhausted


def test_state_round_trip():
    monitor = Monitor("val_loss", patience=3)
    for value in (1.0, 0.5, 0.7):
        monitor.update(value, epoch=int(value * 10))
    restored = Monitor("val_loss", patience=3)
    restored.load_state_dict(monitor.state_dict())
    assert restored.state_dict() == monitor.state_dict() == {"best": 0.5, "best_epoch": 5, "bad_updates": 1}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "low"}, "mode='low' is not a valid choice: expected 'auto', 'min' or 'max'"),
        ({"min_delta": -1}, "min_delta=-1 is out of range"),
        ({"min_delta": float("nan")}, "min_delta=nan is out of range"),
        ({"min_delta": "0.1"}, "min_delta='0.1' is out of range: expected a number ≥ 0"),
    ],
)
def test_invalid_arguments(kwargs, match):
    from trainwell import ConfigError

    with pytest.raises(ConfigError, match=match):
        Monitor("val_loss", **kwargs)
    assert Monitor("val_accuracy", mode="auto").mode == "max"


def test_mode_auto_maximises_accuracy_like_metrics_only():
    from trainwell.observe.monitor import resolve_mode, run_monitor

    assert [resolve_mode(m) for m in ("val_accuracy", "val_f1", "train_acc", "val_top5", "val_r2", "val_auroc")] == ["max"] * 6
    assert [resolve_mode(m) for m in ("val_loss", "val_mae", "val_rmse", "val_perplexity", "custom")] == ["min"] * 5
    assert resolve_mode("val_accuracy", "min") == "min"
    monitor = run_monitor(0.01, metric="val_accuracy")
    assert (monitor.metric, monitor.mode, monitor.min_delta) == ("val_accuracy", "max", 0.01)


def test_value_in_a_row_names_the_metrics_the_row_has():
    from trainwell import ConfigError

    assert Monitor("val_loss").value_in({"val_loss": 0.5}) == 0.5
    with pytest.raises(ConfigError, match=r"monitor='val_acc' is not a metric of this run: its epochs record lr, train_loss, val_accuracy\. Did you mean 'val_accuracy'\?"):
        Monitor("val_acc").value_in({"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5, "lr": 0.1})
