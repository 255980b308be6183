import json
import math

from trainwell.callbacks import JSONLLogger


def test_one_standard_json_line_per_epoch(tmp_path):
    path = tmp_path / "deep" / "metrics.jsonl"
    logger = JSONLLogger(path)
    logger.on_epoch_end(None, epoch=1, metrics={"epoch": 1, "train_loss": 0.5})
    logger.on_epoch_end(None, epoch=2, metrics={"epoch": 2, "train_loss": math.nan, "val_loss": math.inf})
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"event": "epoch", "epoch": 1, "train_loss": 0.5},
        {"event": "epoch", "epoch": 2, "train_loss": None, "val_loss": None},
    ]
    assert "NaN" not in lines[1] and "Infinity" not in lines[1]


def test_restoring_a_state_drops_the_lines_written_after_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    logger = JSONLLogger(path)
    logger.on_epoch_end(None, epoch=1, metrics={"epoch": 1})
    state = logger.state_dict()
    logger.on_epoch_end(None, epoch=2, metrics={"epoch": 2})  # written, then the process died
    resumed = JSONLLogger(path)
    resumed.load_state_dict(state)
    resumed.on_epoch_end(None, epoch=2, metrics={"epoch": 2})
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]
