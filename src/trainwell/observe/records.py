"""A run directory read back: its metrics.jsonl records sorted by kind, with its config.

:func:`read_run` is what ``trainwell plot``, ``report`` and ``doctor`` start from; it needs only
the files a run leaves behind (never the trainer), so it works on any finished, failed or
still-running run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainwell.exceptions import ConfigError, DataError
from trainwell.files.reading import read_text, read_yaml
from trainwell.files.rundir import RunPaths
from trainwell.observe.monitor import Monitor, configured_monitor


@dataclass
class RunRecords:
    """One run's records.

    Attributes:
        path: The run directory.
        epochs: The ``"epoch"`` records in order (train_loss, val_loss, ..., lr, epoch_time_s);
            ``null`` values are read back as NaN.
        steps: The ``"step"`` records (step, train_loss, lr, grad_norm).
        events: Every other record: skipped steps, rollbacks, ``"exception"`` when training failed.
        run_info: The ``"run_start"`` record's fields (versions, device, precision, batch size,
            peak lr, ...), or {} for runs written before it existed.
        config: The run's config.yaml as a dict ({} when missing).
    """

    path: Path
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def failure(self) -> dict[str, Any] | None:
        """The ``"exception"`` record when training failed, else None."""
        failures = [event for event in self.events if event.get("event") == "exception"]
        return failures[-1] if failures else None

    def series(self, key: str) -> list[float]:
        """``key`` of every epoch record (NaN where missing or non-finite)."""
        return [_number(record.get(key)) for record in self.epochs]

    def has(self, key: str) -> bool:
        """Whether any epoch record holds a finite ``key``."""
        return any(math.isfinite(value) for value in self.series(key))

    @classmethod
    def from_records(
        cls, records: list[dict[str, Any]], path: Path = Path("."), config: dict[str, Any] | None = None
    ) -> RunRecords:
        """Sort raw records (as read from metrics.jsonl) by kind."""
        run = cls(path=Path(path), config=dict(config or {}))
        for record in records:
            kind = record.get("event", "epoch")
            if kind == "epoch":
                run.epochs.append(record)
            elif kind == "step":
                run.steps.append(record)
            elif kind == "run_start":
                run.run_info = {key: value for key, value in record.items() if key != "event"}
            else:
                run.events.append(record)
        return run


def monitor_of(run: RunRecords) -> Monitor:
    """The monitor that decided ``run``'s best epoch, from its config (``monitor``, ``mode``, min delta)."""
    return configured_monitor(run.config, validated=run.has("val_loss"))


def read_run(run_dir: str | Path) -> RunRecords:
    """Read ``run_dir``'s metrics.jsonl and config.yaml.

    A last line cut short (a run killed while writing) is ignored; any other unreadable line
    is an error.

    Raises:
        ConfigError: ``run_dir`` is not a directory or holds no metrics.jsonl.
        DataError: a line of metrics.jsonl is not a JSON object.

    Example:
        >>> run = read_run("runs/20250101-120000")  # doctest: +SKIP
        >>> run.series("val_loss")  # doctest: +SKIP
    """
    path = Path(run_dir)
    metrics = RunPaths(path).metrics
    if not path.is_dir():
        raise ConfigError(
            f"RUN_DIR '{path}' is not a directory: give the run directory that trainwell train or fit(run_dir=...) wrote."
        )
    if not metrics.is_file():
        raise ConfigError(
            f"RUN_DIR '{path}' holds no {metrics.name}: it is not a run directory, or its run has not finished an "
            "epoch yet. Give the directory that trainwell train or fit(run_dir=...) wrote."
        )
    lines = read_text(metrics, DataError, "metrics file").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(f"{metrics} line {number} is not valid JSON ({error.msg}): the file is damaged.") from None
        if not isinstance(record, dict):
            raise DataError(
                f"{metrics} line {number} holds a {type(record).__name__}: expected a JSON object per line."
            )
        records.append(record)
    return RunRecords.from_records(records, path, _read_config(path))


def _read_config(path: Path) -> dict[str, Any]:
    config_file = RunPaths(path).config
    if not config_file.is_file():
        return {}
    try:
        config = read_yaml(config_file, ConfigError)
    except ConfigError:  # the report shows what it can without the configuration
        return {}
    return config if isinstance(config, dict) else {}


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)
