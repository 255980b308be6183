import csv

import trainwell
from trainwell.callbacks import CSVLogger


def _rows(path):
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_table_of_step_epoch_and_event_rows(classifier, blob_loaders, tmp_path):
    trainwell.fit(
        classifier, *blob_loaders, epochs=2, run_dir=tmp_path, loggers=["csv"], log_every_steps=4, progress=False
    )
    rows = _rows(tmp_path / "metrics.csv")
    assert [row["event"] for row in rows].count("epoch") == 2 and [row["event"] for row in rows].count("step") == 4
    header = list(rows[0])
    assert header[:3] == ["event", "epoch", "step"]
    assert {"train_loss", "val_loss", "val_accuracy", "lr", "grad_norm", "samples_per_s"} <= set(header)
    assert "torch" not in header and "run_start" not in [row["event"] for row in rows]
    epoch = [row for row in rows if row["event"] == "epoch"][-1]
    assert float(epoch["val_accuracy"]) > 0.5 and epoch["step"] == "16"
    assert not list(tmp_path.glob("*.tmp"))


def test_new_columns_widen_the_file_and_keep_earlier_rows(tmp_path):
    path = tmp_path / "m.csv"
    logger = CSVLogger(path)
    logger.write([{"event": "epoch", "epoch": 1, "train_loss": 0.5}])
    logger.write(
        [
            {"event": "nonfinite_skip", "epoch": 2, "step": 9, "skipped": 1},
            {"event": "epoch", "epoch": 2, "train_loss": float("nan")},
        ]
    )
    rows = _rows(path)
    assert list(rows[0]) == ["event", "epoch", "step", "train_loss", "skipped"]
    assert [(r["event"], r["train_loss"], r["skipped"]) for r in rows] == [
        ("epoch", "0.5", ""),
        ("nonfinite_skip", "", "1"),
        ("epoch", "", ""),
    ]


def test_an_existing_file_is_continued_under_its_header(tmp_path):
    path = tmp_path / "m.csv"
    CSVLogger(path).write([{"event": "epoch", "epoch": 1, "train_loss": 0.5}])
    CSVLogger(path).write([{"event": "epoch", "epoch": 2, "train_loss": 0.4}])
    assert [row["train_loss"] for row in _rows(path)] == ["0.5", "0.4"]
