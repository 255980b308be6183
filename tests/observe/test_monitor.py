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


@pytest.mark.parametrize(("kwargs", "match"), [({"mode": "low"}, "mode='low'"), ({"min_delta": -1}, "min_delta=-1")])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Monitor("val_loss", **kwargs)
