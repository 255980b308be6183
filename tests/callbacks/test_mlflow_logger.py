import importlib.util
import json

import pytest

import trainwell
from trainwell.callbacks import MLflowLogger
from trainwell.exceptions import DependencyError

# Importing MLflow takes seconds: the tests that log through it are marked slow.
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="pip install 'trainwell[mlflow]'")


@pytest.fixture
def no_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_missing_mlflow_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(DependencyError, match=r"loggers=\['mlflow'\] needs the mlflow package.*trainwell\[mlflow\]"):
        trainwell.TrainConfig(loggers=["mlflow"])


def _only_run(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "trainwell"]
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


@pytest.mark.slow
@needs_mlflow
def test_a_run_lands_in_a_local_store_in_the_run_directory(classifier, blob_loaders, tmp_path, no_tracking_uri):
    run_dir = tmp_path / "run"
    trainwell.fit(
        classifier, *blob_loaders, epochs=2, run_dir=run_dir, loggers=["mlflow"], log_every_steps=4, progress=False
    )
    client, run = _only_run((run_dir / "mlruns").as_uri())
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["epochs"] == "2" and run.data.params["loggers"] == "['mlflow']"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [metric.step for metric in history] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "step/train_loss")] == [4, 8, 12, 16]
    assert run.data.tags["trainwell.task"] == "classification"


@pytest.mark.slow
@needs_mlflow
def test_a_tracking_uri_when_given(classifier, blob_loaders, tmp_path, no_tracking_uri):
    store = (tmp_path / "team-store").as_uri()
    trainwell.fit(classifier, *blob_loaders, epochs=1, run_dir=tmp_path / "run", loggers=["mlflow"],
                  mlflow_tracking_uri=store, progress=False)  # fmt: skip
    assert not (tmp_path / "run" / "mlruns").exists()
    _, run = _only_run(store)
    assert run.info.status == "FINISHED" and run.data.metrics["val_loss"] > 0


@pytest.mark.slow
@needs_mlflow
def test_a_failed_run_is_marked_failed(tmp_path, no_tracking_uri):
    from types import SimpleNamespace

    logger = MLflowLogger(tmp_path / "mlruns")
    trainer = SimpleNamespace(config=trainwell.TrainConfig(), run_info={}, events=[], epoch=1, global_step=3)
    logger.on_train_begin(trainer)
    logger.on_exception(trainer, error=RuntimeError("boom"))
    _, run = _only_run((tmp_path / "mlruns").as_uri())
    assert run.info.status == "FAILED" and run.data.tags["failure"] == "RuntimeError: boom"


@pytest.mark.slow
@needs_mlflow
def test_every_event_keeps_its_own_tag_across_writes_and_a_resume(tmp_path, no_tracking_uri):
    from types import SimpleNamespace

    def trainer(events):
        return SimpleNamespace(config=trainwell.TrainConfig(), run_info={}, events=events, epoch=1, global_step=3)

    events = [{"event": "rollback", "epoch": 1}]
    logger = MLflowLogger(tmp_path / "mlruns")
    logger.on_train_begin(trainer(events))
    logger.on_epoch_end(trainer(events), epoch=1, metrics={})
    events.append({"event": "rollback", "epoch": 2})
    logger.on_epoch_end(trainer(events), epoch=2, metrics={})
    state = logger.state_dict()
    # The run failed after that checkpoint, with one more event; it resumes from the checkpoint.
    events.append({"event": "rollback", "epoch": 3})
    logger.on_exception(trainer(events), error=RuntimeError("boom"))
    resumed = MLflowLogger(tmp_path / "mlruns")
    resumed.load_state_dict(state)
    again = events[:2] + [{"event": "rollback", "epoch": 3, "attempt": 2}]
    resumed.on_train_begin(trainer(again))
    resumed.on_train_end(trainer(again))
    _, run = _only_run((tmp_path / "mlruns").as_uri())
    written = sorted(
        (int(key.split(".")[1]), key.split(".")[2], json.loads(value))
        for key, value in run.data.tags.items()
        if key.startswith("event.")
    )
    assert [(index, kind, record.get("epoch")) for index, kind, record in written] == [
        (0, "rollback", 1),
        (1, "rollback", 2),
        (2, "rollback", 3),
        (3, "exception", 1),
        (4, "rollback", 3),
    ]
    assert written[-1][2]["attempt"] == 2 and run.info.status == "FINISHED"
