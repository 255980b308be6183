"""A bad label or shape first appearing in a later batch: the first batch's checks cannot see it."""

import json

import pytest
import torch
from torch import nn

import trainwell
from trainwell import DataError

QUIET = {"progress": False}


def _batches():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 8, generator=generator)
    targets = torch.randint(0, 3, (256,), generator=generator)
    return [(inputs[i : i + 32], targets[i : i + 32].clone()) for i in range(0, 256, 32)]


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


class _JudgedOnTheDevice(trainwell.Trainer):
    """Steps judged as on an accelerator with a fused optimizer: nothing read per step, verdicts at the log interval."""

    def _checks_on_device(self):
        return True


@pytest.mark.parametrize("trainer", [trainwell.Trainer, _JudgedOnTheDevice], ids=["host", "device"])
def test_a_label_out_of_range_in_batch_5_ends_the_run_naming_it_after_a_checkpoint_of_the_last_good_state(
    tmp_path, trainer, one_thread
):
    """Before, a label 3 for 3 classes first in batch 5 gave IndexError: Target 3 is out of bounds, after 4 steps."""
    bad = _batches()
    bad[5][1][7] = 3
    options = {"epochs": 2, "run_dir": tmp_path / "run", "log_every_steps": 2, **QUIET}
    with pytest.raises(DataError) as caught:
        trainer(**options).fit(_model(), bad, bad[:2])
    message = str(caught.value)
    assert message.startswith("train_loader batch 5 (epoch 1) holds the target 3, but the model outputs 3 classes")
    assert "fix the labels of that batch" in message
    assert "A checkpoint of the last good state is committed" in message and "resume='auto'" in message
    # The bad batch changed nothing: the committed state is that of the good steps before it (and, on the
    # device, after it: the run goes on to the next log interval, skipping the bad batch's update).
    good_steps = 5 if trainer is trainwell.Trainer else 6
    checkpoint = trainwell.load_checkpoint(tmp_path / "run")
    assert (
        checkpoint["step"] == good_steps
        and str(tmp_path / "run" / "checkpoints" / f"step-{good_steps:09d}.pt") in message
    )
    assert all(torch.isfinite(t).all() for t in checkpoint["model_state_dict"].values())
    # Fixed data, resumed: the run completes.
    fixed = _batches()
    result = trainer(**options).fit(_model(), fixed, fixed[:2], resume="auto")
    assert [row["epoch"] for row in result.history] == [1, 2]
    if trainer is trainwell.Trainer:
        # On the host the bad batch is refused before its step, so the resumed run is the uninterrupted one.
        whole = trainer(**{**options, "run_dir": tmp_path / "whole"}).fit(_model(), fixed, fixed[:2])
        for resumed, uninterrupted in zip(result.model.parameters(), whole.model.parameters()):
            assert torch.equal(resumed, uninterrupted)


def test_a_batch_of_another_shape_is_refused_naming_it():
    """Before, targets of another shape in batch 4 gave a raw RuntimeError, and inputs of another shape one too."""
    bad = _batches()
    bad[4] = (bad[4][0], bad[4][1][:16])
    with pytest.raises(
        DataError,
        match=r"^train_loader batch 4 \(epoch 1\): targets of shape \(16,\) do not fit outputs "
        r"of shape \(32, 3\) \(expected targets of shape \(32,\)",
    ):
        trainwell.fit(_model(), bad, epochs=1, **QUIET)
    bad = _batches()
    bad[3] = (bad[3][0][:, :7], bad[3][1])
    with pytest.raises(
        DataError,
        match=r"^train_loader batch 3 \(epoch 1\): the model failed on its inputs .*one sample "
        r"\(7,\), while the first batch's was \(8,\)\): mat1 and mat2 shapes",
    ):
        trainwell.fit(_model(), bad, epochs=1, **QUIET)


def test_a_bad_label_in_a_later_validation_batch_is_named():
    val = _batches()[:3]
    val[2][1][0] = 7
    with pytest.raises(DataError, match=r"^val_loader batch 2 holds the target 7, but the model outputs 3 classes"):
        trainwell.fit(_model(), _batches(), val, epochs=1, **QUIET)


def test_metrics_jsonl_records_the_data_error(tmp_path):
    bad = _batches()
    bad[6][1][0] = -2
    with pytest.raises(DataError):
        trainwell.fit(_model(), bad, epochs=1, run_dir=tmp_path, **QUIET)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    failure = rows[-1]
    assert failure["event"] == "exception" and failure["type"] == "DataError"
    assert failure["message"].startswith("train_loader batch 6 (epoch 1) holds the target -2")
