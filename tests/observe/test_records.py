import json

import pytest

from trainwell import ConfigError, DataError
from trainwell.observe.records import RunRecords, read_run


def _write(run_dir, lines, config="epochs: 3\n"):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    (run_dir / "config.yaml").write_text(config)
    return run_dir


def test_records_are_sorted_by_kind(tmp_path):
    lines = [
        json.dumps({"event": "run_start", "device": "cpu", "batch_size": 32}),
        json.dumps({"event": "step", "epoch": 1, "step": 5, "train_loss": 1.0}),
        json.dumps({"event": "nonfinite_skip", "epoch": 1, "step": 6, "skipped": 1}),
        json.dumps({"event": "epoch", "epoch": 1, "train_loss": 0.9, "val_loss": None}),
    ]
    run = read_run(_write(tmp_path / "run", lines))
    assert run.run_info == {"device": "cpu", "batch_size": 32}
    assert [s["step"] for s in run.steps] == [5] and [e["event"] for e in run.events] == ["nonfinite_skip"]
    assert run.series("train_loss") == [0.9] and not run.has("val_loss") and run.config == {"epochs": 3}
    assert run.failure is None and run.name == "run"


def test_a_last_line_cut_short_is_ignored_but_a_damaged_middle_is_an_error(tmp_path):
    good = json.dumps({"event": "epoch", "epoch": 1, "train_loss": 0.9})
    assert len(read_run(_write(tmp_path / "a", [good, '{"event": "ep'])).epochs) == 1
    with pytest.raises(DataError, match=r"metrics.jsonl line 1 is not valid JSON"):
        read_run(_write(tmp_path / "b", ['{"event": "ep', good]))


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"RUN_DIR '.*nope' is not a directory"):
        read_run(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"holds no metrics.jsonl"):
        read_run(tmp_path)


def test_failure_is_the_exception_record():
    run = RunRecords.from_records([{"event": "exception", "type": "DivergenceError", "message": "boom"}])
    assert run.failure["type"] == "DivergenceError"
