import errno
import os

import pytest
import torch
from torch import nn

import trainwell
import trainwell.callbacks
from trainwell import CheckpointError, ConfigError
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
        "best.pt",
        "epoch-0002-step-000000006.pt",
        "epoch-0004-step-000000012.pt",
        "epoch-0005-step-000000015.pt",
        "last.pt",
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


# ---------------------------------------------------------------- the monitor, last.pt and best.pt


class _Scripted(Callback):
    """Each epoch's validation metrics, as scripted (the monitor's decisions are then known)."""

    def __init__(self, **values):
        self.values = values

    def on_eval_end(self, trainer, metrics, **kwargs):
        for name, values in self.values.items():
            metrics[name] = values[trainer.epoch - 1]


SCRIPT = {
    "val_loss": [0.9, 0.4, 0.6, 0.7],
    "val_accuracy": [0.5, 0.6, 0.8, 0.7],
}  # best: epoch 2 by loss, 3 by accuracy


class _Weights(Callback):
    """The module's weights at each epoch's end."""

    def __init__(self):
        self.by_epoch = {}

    def on_epoch_end(self, trainer, epoch, metrics, **kwargs):
        self.by_epoch[epoch] = {k: v.clone() for k, v in trainer.module.state_dict().items()}


@pytest.mark.parametrize(
    "how",
    [
        {"monitor": "val_accuracy"},  # mode "auto": higher is better for an accuracy
        {"monitor": "val_accuracy", "mode": "max"},
        {"callbacks": [trainwell.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=None)]},
    ],
)
def test_the_monitor_chooses_the_best_epoch_the_restored_weights_and_the_best_checkpoint(tmp_path, how):
    options = dict(how)
    weights = _Weights()
    callbacks = [_Scripted(**SCRIPT), *options.pop("callbacks", []), weights]
    result = _fit(tmp_path, epochs=4, callbacks=callbacks, early_stopping_patience=None, **options)
    assert result.best["epoch"] == 3
    assert result.best_checkpoint == tmp_path / "checkpoints" / "epoch-0003-step-000000009.pt"
    best = read_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == 3 and read_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 4
    # The model ends with epoch 3's weights, which best.pt and load_model(..., "best") hold too.
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(tensor, weights.by_epoch[3][name]) and torch.equal(best["model_state_dict"][name], tensor)
    loaded = trainwell.load_model(tmp_path, model=nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert loaded.checkpoint.name == "epoch-0003-step-000000009.pt"
    manifests = {m.epoch: m for m in committed_checkpoints(tmp_path / "checkpoints")}
    assert (manifests[3].monitor, manifests[3].monitored, manifests[3].val_loss) == ("val_accuracy", 0.8, 0.6)
    assert sorted(manifests) == [3, 4]  # the 2 newest, the best among them: epoch 2 (best by loss) is pruned


def test_by_default_the_lowest_val_loss_is_the_best(tmp_path):
    result = _fit(tmp_path, epochs=4, callbacks=[_Scripted(**SCRIPT)], early_stopping_patience=None)
    assert result.best["epoch"] == 2 and read_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2


def test_two_monitors_for_one_run_are_refused(tmp_path):
    stopper = trainwell.callbacks.EarlyStopping(monitor="val_accuracy")
    with pytest.raises(ConfigError, match=r"two monitors for one run: val_accuracy \(max\), val_loss \(min\)"):
        _fit(tmp_path, callbacks=[stopper], monitor="val_loss")
    with pytest.raises(ConfigError, match="monitor='val_accuracy' is a validation metric, but no val_loader was given"):
        trainwell.fit(
            nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))], monitor="val_accuracy", **QUIET
        )


def test_a_monitor_the_epochs_do_not_record_is_refused_naming_those_they_do(tmp_path):
    with pytest.raises(
        ConfigError, match=r"monitor='val_acc' is not a metric of this run: .*Did you mean 'val_accuracy'\?"
    ):
        _fit(tmp_path, epochs=2, monitor="val_acc", mode="max")


@pytest.mark.slow
def test_last_and_best_are_hard_links_committed_by_their_own_manifests(tmp_path):
    from trainwell.files.manifest import read_manifest

    _fit(tmp_path, epochs=3, callbacks=[_Scripted(val_loss=[0.5, 0.3, 0.4])], checkpoint_every_steps=2)
    directory = tmp_path / "checkpoints"
    last, best = read_manifest(directory / "last.pt"), read_manifest(directory / "best.pt")
    assert (last.alias_of, best.alias_of) == ("epoch-0003-step-000000009.pt", "epoch-0002-step-000000006.pt")
    assert os.path.samefile(directory / "best.pt", directory / "epoch-0002-step-000000006.pt")  # no copy
    assert best.sha256 == read_manifest(directory / "epoch-0002-step-000000006.pt").sha256
    # Discovery and pruning never take them for checkpoints of their own.
    assert all(
        m.alias_of is None and m.path.name not in ("last.pt", "best.pt") for m in committed_checkpoints(directory)
    )
    assert latest_checkpoint(tmp_path)[0].name == "epoch-0003-step-000000009.pt"


def test_sharded_checkpoints_get_no_aliases_and_no_warning(tmp_path, caplog):
    """A writer's .dcp directories cannot be linked or copied as last.pt/best.pt: none is tried."""
    import logging
    from types import SimpleNamespace

    from trainwell.files import sharded
    from trainwell.files.manifest import read_manifest

    def writer(path, checkpoint, *, step, epoch, val_loss, kind, healthy, **_):
        temporary = sharded.temporary_directory(path, os.getpid())
        temporary.mkdir()
        files = {sharded.REST: sharded.write_rest(temporary, checkpoint)}
        return sharded.commit(temporary, path, files, step=step, epoch=epoch, val_loss=val_loss, kind=kind, healthy=healthy)

    saver = Checkpointing(tmp_path, writer=writer)
    trainer = SimpleNamespace(
        batch_in_epoch=None, epoch=1, global_step=3, history=[{"epoch": 1, "val_loss": 0.5}],
        is_healthy=lambda: True, checkpoint=lambda: {"step": 3},
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="trainwell"):
        path = saver.save(trainer, kind="epoch")
    assert path == tmp_path / "epoch-0001-step-000000003.dcp" and read_manifest(path).step == 3
    assert saver.best_path == path and caplog.records == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-0001-step-000000003.dcp",
        "epoch-0001-step-000000003.manifest.json",
    ]


class _NoLength:
    """A loader without a length: an epoch can end inside a gradient window."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


def test_a_step_taken_when_an_epoch_ends_inside_a_gradient_window_is_not_taken_again_by_the_next_batch(tmp_path):
    import json

    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 4, generator=generator), torch.randint(0, 2, (8,), generator=generator)) for _ in range(3)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    # 3 batches in windows of 2: step 1 at the 2nd batch, step 2 when the epoch ends (no batch ends it).
    options = {"accumulate_grad_batches": 2, "checkpoint_every_steps": 2, "log_every_steps": 1}
    trainwell.fit(model, _NoLength(batches), epochs=2, run_dir=tmp_path, checkpoint_keep_last=10, **options, **QUIET)
    kept = committed_checkpoints(tmp_path / "checkpoints")
    assert [(m.step, m.epoch, m.kind) for m in kept] == [(4, 2, "epoch"), (2, 1, "epoch")]  # none inside a window
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records if r["event"] == "step"] == [(1, 1), (2, 3)]
