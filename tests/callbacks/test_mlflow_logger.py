import importlib.util

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
