"""Lightning's names for a run's length: max_steps, val_every_steps, limit_*_batches, fast_dev_run, overfit_batches."""

import json
import logging

import pytest
import torch
from torch import nn

import trainwell
from trainwell import ConfigError, DataError, TrainConfig
from trainwell.callbacks import Callback
from trainwell.data import TensorLoader
from trainwell.loop.limits import RunLimits

QUIET = {"progress": False}


class _Seen(Callback):
    """Counts training batches and validation passes (with the step each one ran at)."""

    def __init__(self):
        self.batches, self.validations = [], []

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        self.batches.append((trainer.epoch, batch_index, trainer.global_step))

    def on_eval_begin(self, trainer, **kwargs):
        self.validations.append((trainer.global_step, trainer.batch_in_epoch))


class _CountingLoader:
    """A validation loader that counts the batches drawn from it."""

    def __init__(self, loader):
        self.loader, self.drawn = loader, 0

    def __iter__(self):
        for batch in self.loader:
            self.drawn += 1
            yield batch

    def __len__(self):
        return len(self.loader)


def _loaders(blobs, batch_size=20):
    inputs, targets = blobs
    return (
        TensorLoader(inputs[:200], targets[:200], batch_size=batch_size, seed=0),  # 10 batches
        TensorLoader(inputs[200:], targets[200:], batch_size=20, shuffle=False),  # 5 batches
    )


def test_run_limits_count_optimizer_steps():
    limits = RunLimits(TrainConfig(epochs=4, accumulate_grad_batches=3), 10, None)
    assert (limits.train_batches, limits.steps_per_epoch, limits.total_steps) == (10, 4, 16)
    assert RunLimits(TrainConfig(epochs=4, max_steps=5), 10, None).total_steps == 5
    assert RunLimits(TrainConfig(max_steps=7), None, None).total_steps == 7  # a stream: max_steps plans it
    assert RunLimits(TrainConfig(limit_train_batches=0.25, limit_val_batches=2), 10, 8).train_batches == 2
    with pytest.raises(
        DataError, match=r"limit_train_batches=0.5 is a share of the batches, but train_loader has no len"
    ):
        RunLimits(TrainConfig(limit_train_batches=0.5), None, None)


def test_without_limits_an_epoch_is_the_whole_loader_and_a_validation_pass_too():
    limits = RunLimits(TrainConfig(), 10, 8)
    assert (limits.train_batches, limits.val_batches, limits.cuts_epochs) == (10, None, False)
    stream = RunLimits(TrainConfig(), None, None)
    assert (stream.train_batches, stream.val_batches, stream.cuts_epochs) == (None, None, False)
    assert RunLimits(TrainConfig(limit_train_batches=30), 10, None).train_batches == 10  # a limit beyond the loader


def test_max_steps_stops_inside_an_epoch_and_that_epoch_is_recorded(classifier, blobs):
    seen = _Seen()
    train, val = _loaders(blobs)
    trainer = trainwell.Trainer(max_steps=13, schedule="cosine", callbacks=[seen], **QUIET)
    result = trainer.fit(classifier, train, val)
    assert trainer.config.epochs == 1000  # no epochs given: max_steps decides
    assert trainer.global_step == 13 and len(seen.batches) == 13
    assert [row["epoch"] for row in result.history] == [1, 2] and "val_loss" in result.history[-1]
    assert trainer.limits.total_steps == 13  # the cosine schedule spans the 13 steps
    assert result.history[-1]["lr"] == pytest.approx(1e-3 * trainwell.loop.schedules.cosine(13)(12))


def test_max_steps_beyond_the_epochs_is_reached_as_far_as_they_go(classifier, blobs, caplog):
    train, val = _loaders(blobs)
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        result = trainwell.fit(classifier, train, val, epochs=2, max_steps=50, **QUIET)
    assert len(result.history) == 2
    assert "max_steps=50 will not be reached: 2 epochs x 10 steps = 20 steps" in caplog.text


@pytest.mark.slow
def test_val_every_steps_validates_inside_epochs_too(classifier, blobs, tmp_path):
    seen = _Seen()
    train, val = _loaders(blobs)
    result = trainwell.fit(
        classifier, train, val, epochs=2, val_every_steps=4, run_dir=tmp_path, callbacks=[seen], **QUIET
    )
    # Steps 4 and 8 inside epoch 1, 12 and 16 inside epoch 2, and each epoch's end (steps 10, 20).
    assert seen.validations == [(4, 4), (8, 8), (10, None), (12, 2), (16, 6), (20, None)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    inside = [(r["step"], r["epoch"]) for r in records if r["event"] == "validation"]
    assert inside == [(4, 1), (8, 1), (12, 2), (16, 2)]
    assert all("val_loss" in r and "val_accuracy" in r for r in records if r["event"] == "validation")
    assert len(result.history) == 2  # the best epoch is still decided on epochs' ends
    confusion = json.loads((tmp_path / "confusion.json").read_text())  # of the epoch-end pass the model ends with
    assert (confusion["epoch"], confusion["val_loss"]) == (result.best["epoch"], result.best["val_loss"])


def test_limit_train_and_val_batches(classifier, blobs):
    seen = _Seen()
    train, val = _loaders(blobs)
    counting = _CountingLoader(val)
    trainer = trainwell.Trainer(epochs=2, limit_train_batches=3, limit_val_batches=0.4, callbacks=[seen], **QUIET)
    trainer.fit(classifier, train, counting)
    assert [index for _, index, _ in seen.batches] == [0, 1, 2, 0, 1, 2]
    assert trainer.steps_per_epoch == 3 and trainer.global_step == 6
    assert counting.drawn == 1 + 2 * 2  # the first-batch check, then 2 of the 5 batches per validation


def test_fast_dev_run_runs_one_batch_of_each_and_writes_no_files(classifier, blobs, tmp_path, monkeypatch):
    seen = _Seen()
    train, val = _loaders(blobs)
    counting = _CountingLoader(val)
    run_dir = tmp_path / "run"
    result = trainwell.fit(
        classifier, train, counting, epochs=5, run_dir=run_dir, fast_dev_run=True, callbacks=[seen], **QUIET
    )
    assert len(seen.batches) == 1 and len(result.history) == 1 and counting.drawn == 1 + 1
    assert not run_dir.exists() and result.run_dir is None and result.best_checkpoint is None
    with pytest.raises(ConfigError, match="fast_dev_run=True with resume='auto': a dev run reads and writes no files"):
        trainwell.fit(classifier, train, val, run_dir=run_dir, fast_dev_run=True, resume="auto", **QUIET)


def test_overfit_batches_trains_on_the_same_first_batches_every_epoch(blobs):
    inputs, targets = blobs
    kept = []

    class Batches(trainwell.Trainer):
        def train_step(self, batch):
            kept.append(batch[1].clone())
            return super().train_step(batch)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))
    train = TensorLoader(inputs, targets, batch_size=8, seed=0)  # shuffled: the first two batches are kept as drawn
    result = Batches(epochs=20, lr=3e-2, overfit_batches=2, early_stopping_patience=None, **QUIET).fit(model, train)
    kept = kept[1:]  # the first is the step's check before training
    assert len(kept) == 40 and all(torch.equal(kept[i], kept[i % 2]) for i in range(40))
    assert result.history[-1]["train_loss"] < 0.05  # 16 samples: learned by heart
    with pytest.raises(ConfigError, match="overfit_batches=2 with limit_train_batches=3"):
        trainwell.fit(model, train, overfit_batches=2, limit_train_batches=3, **QUIET)
    with pytest.raises(DataError, match="overfit_batches=100 but train_loader has only 38 batches"):
        trainwell.fit(model, train, overfit_batches=100, **QUIET)


@pytest.mark.parametrize("limit", [None, 3])
def test_a_run_resumed_after_the_last_batch_of_an_epoch_trains_every_batch_of_the_next(blobs, tmp_path, limit):
    """The checkpoint of an epoch's last step, before its validation: the next epoch starts at its first batch."""

    class CrashInValidation(Callback):
        def on_eval_begin(self, trainer, **kwargs):
            if trainer.epoch == 1:
                raise KeyboardInterrupt

    def run(run_dir, callbacks=(), resume=None):
        seen = _Seen()
        train, val = _loaders(blobs)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
        every = limit or len(train)
        trainwell.fit(
            model,
            train,
            val,
            epochs=2,
            limit_train_batches=limit,
            run_dir=run_dir,
            checkpoint_every_steps=every,
            callbacks=[seen, *callbacks],
            resume=resume,
            **QUIET,
        )
        return model, seen

    whole, whole_seen = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", [CrashInValidation()])
    resumed, seen = run(tmp_path / "cut", resume="auto")
    per_epoch = limit or 10
    assert [index for epoch, index, _ in seen.batches] == list(range(per_epoch))  # epoch 2, all of it
    assert [epoch for epoch, _, _ in seen.batches] == [2] * per_epoch
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(resumed.parameters(), whole.parameters()))
