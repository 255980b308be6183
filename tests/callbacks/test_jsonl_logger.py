import json
import math

import pytest
import torch

import trainwell
from trainwell import ConfigError
from trainwell.callbacks import JSONLLogger
from trainwell.data import TensorLoader

QUIET = {"progress": False}
EPOCH_KEYS = {
    "event", "epoch", "step", "train_loss", "val_loss", "val_accuracy", "val_f1", "val_precision", "val_recall",
    "lr", "grad_norm", "memory", "samples_per_s", "epoch_time_s", "nonfinite_steps",
}  # fmt: skip
STEP_KEYS = {"event", "epoch", "step", "train_loss", "lr", "grad_norm"}
RUN_START_KEYS = {"event", "trainwell", "torch", "python", "device", "precision", "threads", "batch_size", "steps_per_epoch", "peak_lr", "parameters", "task"}


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


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


def test_every_line_parses_and_carries_the_listed_keys(classifier, blob_loaders, tmp_path):
    # 240 samples in batches of 32: 8 steps per epoch, 24 in all; a step record every 5 steps.
    trainwell.fit(classifier, *blob_loaders, epochs=3, run_dir=tmp_path, log_every_steps=5, **QUIET)
    records = _records(tmp_path / "metrics.jsonl")
    kinds = [record["event"] for record in records]
    assert kinds[0] == "run_start" and kinds.count("epoch") == 3 and kinds.count("step") == 4
    assert RUN_START_KEYS <= set(records[0]) and records[0]["batch_size"] == 32 and records[0]["device"] == "cpu"
    for record in records:
        if record["event"] == "epoch":
            assert set(record) == EPOCH_KEYS
        elif record["event"] == "step":
            assert set(record) == STEP_KEYS
            assert record["step"] % 5 == 0 and record["train_loss"] > 0 and record["grad_norm"] > 0
    assert [r["step"] for r in records if r["event"] == "epoch"] == [8, 16, 24]


def test_step_records_read_the_loss_only_at_their_interval(classifier, blob_loaders, tmp_path):
    reads = []

    class CountingTrainer(trainwell.Trainer):
        def running_loss(self):
            reads.append(self.global_step)
            return super().running_loss()

    CountingTrainer(epochs=2, run_dir=tmp_path, log_every_steps=3, **QUIET).fit(classifier, *blob_loaders)
    # The logger reads at steps 3, 6, ..., 15; the trainer once per epoch for the epoch's row.
    assert [step for step in reads if step % 8] == [3, 6, 9, 12, 15]
    assert len(reads) == 5 + 2


def test_no_grad_norm_without_clipping(classifier, blob_loaders, tmp_path):
    trainwell.fit(classifier, *blob_loaders, epochs=1, run_dir=tmp_path, max_grad_norm=None, log_every_steps=4, **QUIET)
    assert not any("grad_norm" in record for record in _records(tmp_path / "metrics.jsonl"))


def test_a_failure_is_recorded_with_its_type_and_message(blobs, tmp_path):
    inputs, targets = blobs

    class FailsInEpoch2(trainwell.Callback):
        def on_epoch_begin(self, trainer, epoch, **kwargs):
            if epoch == 2:
                raise RuntimeError("disk on fire")

    model = torch.nn.Linear(2, 3)
    with pytest.raises(RuntimeError):
        trainwell.fit(model, TensorLoader(inputs, targets), epochs=3, run_dir=tmp_path, callbacks=[FailsInEpoch2()], **QUIET)
    last = _records(tmp_path / "metrics.jsonl")[-1]
    assert (last["event"], last["type"], last["message"], last["epoch"]) == ("exception", "RuntimeError", "disk on fire", 2)


def test_every_n_steps_is_validated():
    with pytest.raises(ConfigError, match=r"every_n_steps=-1 is not valid: expected an integer ≥ 0"):
        JSONLLogger("m.jsonl", every_n_steps=-1)


def test_zero_writes_no_step_records(classifier, blob_loaders, tmp_path):
    path = tmp_path / "own.jsonl"
    trainwell.fit(classifier, *blob_loaders, epochs=2, callbacks=[JSONLLogger(path, every_n_steps=0)], log_every_steps=1, **QUIET)
    assert {record["event"] for record in _records(path)} == {"run_start", "epoch"}


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
