from types import SimpleNamespace

import pytest
import torch

from trainwell import ConfigError
from trainwell.callbacks import EarlyStopping


def _trainer():
    model = torch.nn.Linear(2, 1)
    return SimpleNamespace(
        model=model, module=model, should_stop=False, epoch=0, evaluated_state_dict=model.state_dict,
        record_event=lambda *args, **fields: None,
    )


def _epoch(stopper, trainer, epoch, val_loss):
    trainer.epoch = epoch
    with torch.no_grad():
        trainer.module.weight.fill_(float(epoch))
    stopper.on_epoch_end(trainer, epoch=epoch, metrics={"val_loss": val_loss})


def test_sets_the_stop_flag_after_patience_and_restores_best():
    stopper, trainer = EarlyStopping(patience=2), _trainer()
    for epoch, loss in enumerate([0.9, 0.5, 0.6, 0.7], start=1):
        _epoch(stopper, trainer, epoch, loss)
    assert trainer.should_stop and stopper.stopped_epoch == 4
    stopper.on_train_end(trainer)
    assert torch.all(trainer.module.weight == 2.0)


def test_without_the_metric_it_does_nothing():
    stopper, trainer = EarlyStopping(patience=1), _trainer()
    stopper.on_epoch_end(trainer, epoch=1, metrics={"train_loss": 1.0})
    stopper.on_epoch_end(trainer, epoch=2, metrics={"train_loss": 2.0})
    assert not trainer.should_stop and stopper.best_weights is None


def test_restore_can_be_switched_off():
    stopper, trainer = EarlyStopping(patience=5, restore_best_weights=False), _trainer()
    _epoch(stopper, trainer, 1, 0.1)
    _epoch(stopper, trainer, 2, 0.9)
    stopper.on_train_end(trainer)
    assert torch.all(trainer.module.weight == 2.0)


def test_state_dict_round_trip():
    stopper, trainer = EarlyStopping(patience=3), _trainer()
    _epoch(stopper, trainer, 1, 0.4)
    _epoch(stopper, trainer, 2, 0.6)
    restored = EarlyStopping(patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert restored.monitor.state_dict() == stopper.monitor.state_dict()


def test_the_best_weights_travel_with_the_state():
    stopper, trainer = EarlyStopping(patience=3), _trainer()
    _epoch(stopper, trainer, 1, 0.4)
    best = {name: tensor.clone() for name, tensor in trainer.module.state_dict().items()}
    _epoch(stopper, trainer, 2, 0.6)
    restored = EarlyStopping(patience=3)
    restored.load_state_dict(stopper.state_dict())
    restored.on_train_end(trainer)
    for name, tensor in trainer.module.state_dict().items():
        assert torch.equal(tensor, best[name])


def test_lightnings_names_monitor_mode_patience_min_delta():
    stopper, trainer = EarlyStopping(monitor="val_accuracy", mode="max", patience=2, min_delta=0.01), _trainer()
    for epoch, accuracy in enumerate([0.80, 0.85, 0.855, 0.86], start=1):
        trainer.epoch = epoch
        stopper.on_epoch_end(trainer, epoch=epoch, metrics={"val_accuracy": accuracy, "val_loss": 1.0})
    assert stopper.monitor.best_epoch == 2 and trainer.should_stop and stopper.stopped_epoch == 4
    assert EarlyStopping(monitor="val_f1").monitor.mode == "max" and EarlyStopping("val_mae").monitor.mode == "min"
    assert EarlyStopping(metric="val_accuracy").monitor.metric == "val_accuracy"  # the former name still works


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "maximum"}, "mode='maximum' is not a valid choice"),
        ({"patience": 0}, "patience=0 is out of range"),
        ({"min_delta": -0.1}, "min_delta=-0.1 is out of range"),
        ({"monitor": ""}, "monitor='' is not valid"),
    ],
)
def test_bad_arguments_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        EarlyStopping(**options)


def test_patience_counts_from_start_epoch_and_the_stop_is_an_event():
    events = []
    stopper, trainer = EarlyStopping(patience=2, start_epoch=5), _trainer()
    trainer.record_event = lambda event, level, message, **fields: events.append((event, message, fields))
    for epoch, loss in enumerate([0.5, 0.6, 0.7, 0.8], start=1):
        _epoch(stopper, trainer, epoch, loss)
    assert not trainer.should_stop and stopper.monitor.best_epoch == 1  # the best still counts
    _epoch(stopper, trainer, 5, 0.9)
    assert not trainer.should_stop
    stopper.on_epoch_end(trainer, epoch=6, metrics={"val_loss": 0.95, "lr": 0.002})
    assert trainer.should_stop and stopper.stopped_epoch == 6
    assert events == [
        ("early_stopping", "Early stopping at epoch 6: val_loss has not improved for 2 epochs (best 0.5 at epoch 1).",
         {"metric": "val_loss", "best_epoch": 1, "lr": 0.002})
    ]
