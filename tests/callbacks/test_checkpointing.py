import errno
import os

import pytest
import torch
from torch import nn

import trainwell
from trainwell import CheckpointError
from trainwell.callbacks import Callback
from trainwell.callbacks.checkpointing import Checkpointing
from trainwell.config import TrainConfig
from trainwell.data import TensorLoader
from trainwell.files.checkpoint import committed_checkpoints, latest_checkpoint, read_checkpoint

QUIET = {"progress": False}


def _fit(run_dir, epochs=4, callbacks=(), **options):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 4, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    loader = TensorLoader(inputs, targets, batch_size=32, seed=0)
    return trainwell.fit(
        model,
        loader,
        TensorLoader(inputs, targets, shuffle=False),
        epochs=epochs,
        run_dir=run_dir,
        callbacks=list(callbacks),
        **QUIET,
        **options,
    )


class _ValLoss(Callback):
    def __init__(self, values):
        self.values = values

    def on_eval_end(self, trainer, metrics, **kwargs):
        metrics["val_loss"] = self.values[trainer.epoch - 1]


def test_every_epoch_the_last_two_and_the_best_are_kept(tmp_path):
    result = _fit(tmp_path, epochs=5, callbacks=[_ValLoss([0.9, 0.4, 0.6, 0.7, 0.8])], early_stopping_patience=None)
    kept = committed_checkpoints(tmp_path / "checkpoints")
    assert [(m.epoch, m.step, m.kind) for m in kept] == [(5, 15, "epoch"), (4, 12, "epoch"), (2, 6, "epoch")]
    assert result.best_checkpoint == tmp_path / "checkpoints" / "epoch-0002-step-000000006.pt"
    assert read_checkpoint(result.best_checkpoint)["val_loss"] == 0.4
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.suffix == ".pt") == [
        "epoch-0002-step-000000006.pt",
        "epoch-0004-step-000000012.pt",
        "epoch-0005-step-000000015.pt",
    ]


def test_checkpoint_every_steps_and_the_trainers_checkpoint_contents(tmp_path):
    _fit(tmp_path, epochs=2, checkpoint_every_steps=2, checkpoint_keep_last=10, checkpoint_keep_best=0)
    kept = committed_checkpoints(tmp_path / "checkpoints")
    assert [(m.step, m.epoch, m.kind) for m in kept] == [
        (6, 2, "epoch"),
        (6, 1, "step"),
        (4, 1, "step"),
        (3, 1, "epoch"),
        (2, 0, "step"),
    ]
    mid = read_checkpoint(tmp_path / "checkpoints" / "step-000000004.pt")
    assert (mid["epoch"], mid["step"], mid["batch_in_epoch"]) == (1, 4, 1)
    assert {"trainer", "config", "versions", "model_state_dict", "optimizer_state_dict"} <= set(mid)
    assert {"rng", "loader", "callbacks", "precision", "state", "schedule"} <= set(mid["trainer"])
    assert mid["trainer"]["callbacks"]["EarlyStopping"]["monitor"]["best_epoch"] == 1
    assert mid["config"]["checkpoint_every_steps"] == 2


def test_no_checkpoints_without_a_run_dir_or_when_turned_off(tmp_path):
    assert Checkpointing.for_config(TrainConfig()) is None
    assert Checkpointing.for_config(TrainConfig(run_dir=tmp_path, save_checkpoints=False)) is None
    _fit(tmp_path, epochs=1, save_checkpoints=False)
    assert not (tmp_path / "checkpoints").exists()


def test_a_checkpoint_that_cannot_be_written_stops_training_and_leaves_the_last_one(tmp_path, monkeypatch):
    from trainwell.files import atomic

    class DiskFillsInEpoch3(Callback):
        def on_epoch_begin(self, trainer, epoch, **kwargs):
            if epoch == 3:

                def full(*args, **kwargs):
                    raise OSError(errno.ENOSPC, "No space left on device")

                monkeypatch.setattr(atomic.os, "fsync", full)

    with pytest.raises(CheckpointError, match=r"after 2 attempts: \[Errno 28\] No space left on device") as caught:
        _fit(tmp_path, epochs=4, callbacks=[DiskFillsInEpoch3()], retry_attempts=2, retry_base_delay_s=0.0)
    monkeypatch.undo()
    assert "epoch-0003" in str(caught.value)
    path, saved = latest_checkpoint(tmp_path)
    assert (path.name, saved["epoch"]) == ("epoch-0002-step-000000006.pt", 2)
    assert not [p for p in os.listdir(tmp_path / "checkpoints") if ".tmp-" in p]
