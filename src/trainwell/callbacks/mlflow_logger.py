"""MLflow logger: the run's options, metrics and events in an MLflow tracking store (optional dependency)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainwell.callbacks.metric_logger import MetricLogger, flat_options
from trainwell.extras import require
from trainwell.observe.monitor import is_number

if TYPE_CHECKING:
    from trainwell.callbacks.base import TrainerView

# MLflow refuses longer parameter values.
MAX_PARAM_CHARS = 6000


class MLflowLogger(MetricLogger):
    """Log a run to MLflow: its options as parameters, epoch and step metrics, events as tags.

    The store is ``tracking_uri`` when given, else ``$MLFLOW_TRACKING_URI`` when set (a team's
    tracking server), else a local file store in ``local_dir`` (``RUN_DIR/mlruns`` for
    ``loggers=["mlflow"]``): nothing leaves the machine unless asked. Epoch metrics keep their
    names (``val_loss`` ...) with the epoch as MLflow's step; step records are logged as
    ``step/<metric>`` over the optimizer step. Events are tags numbered in the order they happen,
    ``event.<n>.<kind>`` (the record as JSON). A resumed run continues the same MLflow run and its
    numbering, past any event an interrupted attempt tagged after its last checkpoint. The run
    ends FINISHED, or FAILED with the error in the ``failure`` tag.

    MLflow 3 keeps its file store only on request: for the local store this logger sets
    ``MLFLOW_ALLOW_FILE_STORE=true`` in the process (view it with the same variable:
    ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri RUN_DIR/mlruns``); give a
    ``sqlite:///...`` or ``http://...`` URI to use another store.

    Args:
        local_dir: The local store's directory, used when no tracking URI is given or set.
        tracking_uri: Where to log (a server, ``sqlite:///mlflow.db``, ``file:...``).
        experiment: The MLflow experiment's name (created when absent).
        run_name: The MLflow run's name (default: the local directory's parent, the run directory's name).
        every_n_steps: Step record interval; None follows the trainer's ``log_every_steps``, 0 writes none.

    Raises:
        DependencyError: MLflow is not installed (``pip install 'trainwell[mlflow]'``).

    Example:
        >>> logger = MLflowLogger("runs/demo/mlruns", experiment="digits")  # doctest: +SKIP
    """

    def __init__(
        self,
        local_dir: str | Path | None = None,
        tracking_uri: str | None = None,
        experiment: str = "trainwell",
        run_name: str | None = None,
        every_n_steps: int | None = None,
    ) -> None:
        require("mlflow", "MLflowLogger", "mlflow")
        super().__init__(every_n_steps)
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name or (self.local_dir.resolve().parent.name if self.local_dir is not None else None)
        self.run_id: str | None = None
        self._client: Any = None
        self._failed: str | None = None
        self._events_tagged = 0

    def resolved_uri(self) -> str:
        """The tracking URI this logger writes to."""
        if self.tracking_uri:
            return self.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        if self.local_dir is None:
            from trainwell.exceptions import ConfigError

            raise ConfigError(
                "MLflowLogger needs local_dir or tracking_uri (or MLFLOW_TRACKING_URI set): where to log."
            )
        return self.local_dir.resolve().as_uri()

    def on_train_begin(self, trainer: TrainerView, **kwargs: Any) -> None:
        from mlflow.entities import Param

        uri = self.resolved_uri()
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=uri)
        if self.run_id is None:  # a resumed run goes on in the MLflow run it began
            found = self._client.get_experiment_by_name(self.experiment)
            experiment_id = (
                found.experiment_id if found is not None else self._client.create_experiment(self.experiment)
            )
            self.run_id = self._client.create_run(experiment_id, run_name=self.run_name).info.run_id
            to_yaml = getattr(trainer.config, "to_yaml_dict", None)
            params = flat_options(to_yaml()) if to_yaml is not None else {}
            self._client.log_batch(self.run_id, params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()])
        else:
            # The attempt that stopped may have tagged events after its last checkpoint: keep them.
            tagged = [key.split(".") for key in self._client.get_run(self.run_id).data.tags if key.startswith("event.")]
            numbers = [int(parts[1]) for parts in tagged if len(parts) > 2 and parts[1].isdigit()]
            self._events_tagged = max([self._events_tagged, *(n + 1 for n in numbers)])
        super().on_train_begin(trainer, **kwargs)

    def write(self, records: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        if not records or self._client is None:
            return
        now, metrics, tags = int(time.time() * 1000), [], {}
        for record in records:
            kind = record.get("event")
            if kind in ("epoch", "step"):
                position = int(record.get(kind) or 0)
                prefix = "" if kind == "epoch" else "step/"
                for key, value in record.items():
                    if key not in ("event", "epoch", "step") and is_number(value):
                        metrics.append(Metric(prefix + key, float(value), now, position))
            elif kind == "run_start":
                tags.update({f"trainwell.{key}": str(value) for key, value in record.items() if key != "event"})
            else:
                tags[f"event.{self._events_tagged}.{kind}"] = json.dumps(record, default=str)[:MAX_PARAM_CHARS]
                self._events_tagged += 1
                if kind == "exception":
                    self._failed = f"{record.get('type')}: {record.get('message')}"
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])

    def close(self) -> None:
        if self._client is None or self.run_id is None:
            return
        if self._failed is not None:
            self._client.set_tag(self.run_id, "failure", self._failed[:MAX_PARAM_CHARS])
        self._client.set_terminated(self.run_id, status="FAILED" if self._failed is not None else "FINISHED")
        self._client = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "run_id": self.run_id, "events_tagged": self._events_tagged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.run_id = state.get("run_id")
        self._events_tagged = state.get("events_tagged", 0)
