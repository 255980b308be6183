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

    # Train and val loss under one tag in the train/ and val/ runs: TensorBoard draws one chart of two lines.
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "tensorboard"))
    runs.Reload()
    pairs = {run: [event.value for event in runs.Scalars(run, "epoch/loss")] for run in ("train", "val")}
    assert pairs["train"] == pytest.approx([event.value for event in events.Scalars("epoch/train_loss")])
    assert pairs["val"] == pytest.approx([event.value for event in events.Scalars("epoch/val_loss")])

    # The options as hyperparameters, read back by TensorBoard's hparams plugin.
    from tensorboard.plugins.hparams import metadata

    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["epochs"].number_value == 2 and start.hparams["loggers"].string_value == "['tensorboard']"
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert "epoch/val_loss" in [metric.name.tag for metric in experiment.metric_infos]


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
