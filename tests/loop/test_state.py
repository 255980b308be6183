import logging

import pytest
import torch
from torch import nn

import trainwell
from trainwell.callbacks import Callback
from trainwell.data import TensorLoader
from trainwell.loop.state import TrainState

QUIET = {"progress": False}


def test_an_epoch_begins_with_zeroed_sums_and_counts_as_completed_once_its_pass_ends():
    state = TrainState(global_step=7)
    state.begin_epoch(skipped=2)
    assert (state.epoch, state.batch_in_epoch, state.completed_epochs) == (1, 0, 0)
    assert (state.loss_sum, state.loss_count, state.skipped_at_epoch_start) == (0.0, 0, 2)
    state.loss_sum, state.loss_count = 3.0, 2
    assert state.running_loss() == 1.5
    state.batch_in_epoch = None
    assert state.completed_epochs == 1


def test_the_sums_live_on_the_device_that_judges_the_steps():
    state = TrainState(sums_device=torch.device("cpu"))
    state.begin_epoch(skipped=0)
    assert isinstance(state.loss_sum, torch.Tensor) and state.loss_count.dtype == torch.int64


def test_the_state_round_trips_with_its_events_and_history():
    state = TrainState()
    state.begin_epoch(skipped=0)
    state.global_step, state.batch_in_epoch = 5, 5
    state.history.append({"epoch": 1, "train_loss": 0.5})
    state.record_event("rollback", logging.WARNING, "rolled back", to_step=2)
    restored = TrainState()
    restored.load_state_dict(state.state_dict())
    assert restored == state
    assert restored.events == [{"event": "rollback", "epoch": 1, "step": 5, "to_step": 2}]


# ---------------------------------------------------------------- a new stateful feature needs no resume code


class _SamplesSeen:
    """A part of the run that a subclass adds: the training samples seen, by class label."""

    def __init__(self):
        self.counts = torch.zeros(2, dtype=torch.int64)

    def state_dict(self):
        return {"counts": self.counts.clone()}

    def load_state_dict(self, state):
        self.counts = state["counts"].clone()


class _CountingTrainer(trainwell.Trainer):
    def __init__(self, **options):
        super().__init__(**options)
        self.seen = _SamplesSeen()

    def parts(self):
        return {**super().parts(), "seen": self.seen}

    def train_step(self, batch):
        self.seen.counts += torch.bincount(batch[1], minlength=2)
        return super().train_step(batch)


class _LossRecord(Callback):
    """A stateful callback: the highest step loss so far, and how many steps it saw."""

    def __init__(self, stop_at=None):
        self.highest, self.steps, self.stop_at = 0.0, 0, stop_at

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        self.highest, self.steps = max(self.highest, float(loss)), self.steps + 1
        if trainer.global_step == self.stop_at:
            raise KeyboardInterrupt  # a crash right after step 7's callbacks, before any checkpoint of it

    def state_dict(self):
        return {"highest": self.highest, "steps": self.steps}

    def load_state_dict(self, state):
        self.highest, self.steps = state["highest"], state["steps"]


def _run(run_dir, record, resume=None):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 4, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    trainer = _CountingTrainer(
        epochs=3,
        lr=1e-2,
        schedule="onecycle",
        seed=0,
        run_dir=run_dir,
        checkpoint_every_steps=3,
        callbacks=[record],
        **QUIET,
    )
    train = TensorLoader(inputs[:80], targets[:80], batch_size=16, seed=2)
    trainer.fit(model, train, TensorLoader(inputs[80:], targets[80:], batch_size=16, shuffle=False), resume=resume)
    return trainer, model


def test_a_new_part_and_a_stateful_callback_survive_an_exact_resume_without_resume_code(tmp_path, one_thread):
    whole_record = _LossRecord()
    whole, whole_model = _run(tmp_path / "whole", whole_record)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut", _LossRecord(stop_at=7))
    record = _LossRecord()
    resumed, resumed_model = _run(tmp_path / "cut", record, resume="auto")
    assert resumed.global_step == whole.global_step == 15
    assert torch.equal(resumed.seen.counts, whole.seen.counts) and int(whole.seen.counts.sum()) == 15 * 16
    assert (record.highest, record.steps) == (whole_record.highest, whole_record.steps) and record.steps == 15
    for mine, theirs in zip(resumed_model.state_dict().values(), whole_model.state_dict().values()):
        assert torch.equal(mine, theirs)
