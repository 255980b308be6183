import pytest
import torch
from torch import nn

import trainwell
from trainwell import ConfigError
from trainwell.callbacks import Callback
from trainwell.data import TensorLoader
from trainwell.files.checkpoint import read_checkpoint
from trainwell.loop.averaging import WeightAverage
from trainwell.reliability.resume import TRAINER_KEY

QUIET = {"progress": False}


def _net(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))


def test_the_average_warms_up_lerps_floats_and_copies_integer_buffers():
    model = _net()
    average = WeightAverage(model, decay=0.99)
    start = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.train()
    model(torch.randn(8, 4))  # moves BatchNorm's running statistics and counter
    average.update()
    live = model.state_dict()
    first = 1 - min(0.99, 2 / 11)  # the warmed-up decay of the first update
    for name, value in average.weights.items():
        if value.is_floating_point():
            assert torch.allclose(value, start[name] + first * (live[name] - start[name]), atol=1e-6), name
        else:
            assert torch.equal(value, live[name]), name
    for _ in range(2000):
        average.update()
    assert all(torch.allclose(average.weights[name], live[name], atol=1e-5) for name in live)


def test_applied_swaps_the_average_in_and_the_live_weights_back():
    model = _net()
    average = WeightAverage(model, decay=0.5)
    live = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with torch.no_grad():
        average.weights["0.weight"].fill_(7.0)
    with average.applied():
        assert torch.all(model[0].weight == 7.0)
    assert all(torch.equal(model.state_dict()[name], live[name]) for name in live)
    restored = WeightAverage(_net(seed=2), decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert torch.equal(restored.weights["0.weight"], average.weights["0.weight"]) and restored.updates == average.updates


def test_ema_decay_is_validated():
    with pytest.raises(ConfigError, match=r"ema_decay=1.0 is out of range: expected one of 'auto' or a number > 0 and < 1 or None"):
        trainwell.TrainConfig(ema_decay=1.0)
    assert trainwell.TrainConfig().ema_decay == "auto"


def test_auto_averages_convolutional_models_at_a_constant_lr_only():
    from trainwell.loop.averaging import resolve_decay

    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    assert resolve_decay("auto", cnn, "constant") == 0.99
    assert resolve_decay("auto", cnn, "onecycle") is None
    assert resolve_decay("auto", _net(), "constant") is None
    assert resolve_decay(None, cnn, "constant") is None and resolve_decay(0.9, _net(), "cosine") == 0.9


def test_fit_averages_a_cnn_by_default_and_logs_why(caplog):
    from trainwell.models import CNN

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(64, 1, 8, 8, generator=generator), torch.arange(64) % 2
    trainer = trainwell.Trainer(epochs=1, **QUIET)
    with caplog.at_level("INFO", logger="trainwell"):
        trainer.fit(CNN(1, 2, channels=(4,)), TensorLoader(images, labels, batch_size=16, seed=0), TensorLoader(images, labels, shuffle=False))
    assert trainer.averaging is not None and trainer.averaging.decay == 0.99 and trainer.run_info["ema_decay"] == 0.99
    assert "ema_decay='auto': a convolutional model at a constant lr" in caplog.text


def _data():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(96, 4, generator=generator)
    targets = (inputs[:, 0] + 0.3 * inputs[:, 1] > 0).long()
    return TensorLoader(inputs[:80], targets[:80], batch_size=16, seed=2), TensorLoader(inputs[80:], targets[80:], batch_size=16, shuffle=False)


@pytest.mark.slow
def test_validation_checkpoints_and_the_final_model_are_the_average(tmp_path):
    train, val = _data()
    model = _net()
    trainer = trainwell.Trainer(epochs=3, lr=1e-2, seed=0, ema_decay=0.9, run_dir=tmp_path / "run", restore_best_weights=False, early_stopping_patience=None, **QUIET)
    result = trainer.fit(model, train, val)
    # The model ends with the average, and its validation numbers are the last epoch's.
    assert torch.equal(model[0].weight, trainer.averaging.weights["0.weight"])
    assert trainwell.evaluate(model, val).metrics["loss"] == pytest.approx(result.history[-1]["val_loss"], rel=1e-6)
    # A checkpoint keeps the live weights to resume from and the average for inference and export.
    checkpoint = read_checkpoint(result.best_checkpoint) if result.best_checkpoint else None
    assert checkpoint is not None
    parts = checkpoint[TRAINER_KEY]
    assert torch.equal(checkpoint["model_state_dict"]["0.weight"], parts["averaging"]["weights"]["0.weight"])
    assert not torch.equal(parts["model"]["0.weight"], parts["averaging"]["weights"]["0.weight"])
    assert torch.equal(trainwell.load_model(tmp_path / "run", model=_net(seed=5)).model[0].weight, checkpoint["model_state_dict"]["0.weight"])


def test_the_best_weights_restored_are_the_averages_of_the_best_epoch():
    train, val = _data()
    seen = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, metrics, **kwargs):
            seen[epoch] = {name: tensor.clone() for name, tensor in trainer.evaluated_state_dict().items()}

    model = _net()
    result = trainwell.fit(model, train, val, epochs=4, lr=3e-2, seed=0, ema_decay=0.8, callbacks=[Snapshot()], **QUIET)
    best = result.best["epoch"]
    assert all(torch.equal(model.state_dict()[name], seen[best][name]) for name in seen[best])


class _Crash(Callback):
    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        if trainer.global_step == 7:
            raise KeyboardInterrupt


def _resumable(run_dir, callbacks=(), resume=None):
    train, val = _data()
    model = _net()
    trainer = trainwell.Trainer(
        epochs=3, lr=1e-2, schedule="onecycle", seed=0, ema_decay=0.9, run_dir=run_dir, checkpoint_every_steps=3,
        callbacks=list(callbacks), **QUIET,
    )
    trainer.fit(model, train, val, resume=resume)
    return trainer, model


def test_the_average_resumes_exactly(tmp_path, one_thread):
    whole, whole_model = _resumable(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _resumable(tmp_path / "cut", [_Crash()])
    resumed, resumed_model = _resumable(tmp_path / "cut", resume="auto")
    assert resumed.averaging.updates == whole.averaging.updates == 15
    for name, tensor in whole.averaging.weights.items():
        assert torch.equal(resumed.averaging.weights[name], tensor), name
    for mine, theirs in zip(resumed_model.state_dict().values(), whole_model.state_dict().values()):
        assert torch.equal(mine, theirs)
    assert [row["val_loss"] for row in resumed.history] == [row["val_loss"] for row in whole.history]
