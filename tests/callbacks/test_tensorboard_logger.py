import importlib.util

import pytest

import trainwell
from trainwell.callbacks import TensorBoardLogger
from trainwell.exceptions import DependencyError


def test_scalars_land_in_event_files(classifier, blob_loaders, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'trainwell[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainwell.fit(
        classifier,
        *blob_loaders,
        epochs=2,
        run_dir=tmp_path,
        loggers=["tensorboard"],
        log_every_steps=4,
        progress=False,
    )
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "epoch/train_loss",
        "epoch/val_loss",
        "epoch/val_accuracy",
        "epoch/lr",
        "step/train_loss",
        "step/grad_norm",
    } <= scalars
    assert [event.step for event in events.Scalars("epoch/val_loss")] == [1, 2]
    assert [event.step for event in events.Scalars("step/train_loss")] == [4, 8, 12, 16]


def _without_tensorboard(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "tensorboard" else real(name, *args)
    )


def test_missing_tensorboard_names_the_install_command(monkeypatch, tmp_path):
    _without_tensorboard(monkeypatch)
    with pytest.raises(
        DependencyError,
        match=r"TensorBoardLogger needs the tensorboard package.*pip install 'trainwell\[tensorboard\]'",
    ):
        TensorBoardLogger(tmp_path)


def test_missing_tensorboard_is_refused_when_the_config_is_built(monkeypatch):
    _without_tensorboard(monkeypatch)
    with pytest.raises(DependencyError, match=r"loggers=\['tensorboard'\] needs the tensorboard package"):
        trainwell.TrainConfig(loggers=["tensorboard"])
    assert issubclass(DependencyError, ImportError) and issubclass(DependencyError, trainwell.TrainwellError)
