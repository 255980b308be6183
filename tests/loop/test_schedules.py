import pytest
import torch

from trainwell.loop.schedules import build_schedule, constant, cosine, onecycle


@pytest.mark.parametrize(("total", "warmup"), [(100, 0.3), (23, 0.3), (7, 0.25), (2, 0.3), (1000, 0.1)])
def test_onecycle_matches_torch_onecyclelr_step_for_step(total, warmup):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.0, total_steps=total, pct_start=warmup, cycle_momentum=False
    )
    schedule = onecycle(total, warmup)
    for step in range(total):
        assert schedule(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        optimizer.step()
        if step < total - 1:
            reference.step()


def test_onecycle_peaks_at_one():
    schedule = onecycle(100, 0.3)
    assert max(schedule(step) for step in range(100)) == pytest.approx(1.0)


def test_cosine_decays_from_peak_and_ends_above_zero():
    schedule = cosine(10)
    values = [schedule(step) for step in range(10)]
    assert values[0] == 1.0
    assert all(a > b for a, b in zip(values, values[1:]))
    assert 0 < values[-1] < 0.05


def test_cosine_warms_up_linearly():
    schedule = cosine(100, warmup_fraction=0.1)
    assert [schedule(step) for step in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert schedule(10) == 1.0


def test_constant_is_flat_after_warmup():
    schedule = constant(10, warmup_fraction=0.2)
    assert [schedule(step) for step in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert all(constant(5)(step) == 1.0 for step in range(5))


def test_schedules_are_pure_functions_of_the_step():
    schedule = build_schedule("onecycle", 50, 0.3)
    forward = [schedule(step) for step in range(50)]
    backward = [schedule(step) for step in reversed(range(50))][::-1]
    assert forward == backward


def test_total_steps_must_be_positive():
    with pytest.raises(ValueError, match="total_steps=0"):
        onecycle(0)


# ---------------------------------------------------------------- schedulers of the user's own

from torch import nn  # noqa: E402

import trainwell  # noqa: E402
from trainwell import ConfigError  # noqa: E402
from trainwell.callbacks import Callback  # noqa: E402

LR_SCHEDULERS = {
    # name: (factory, interval)
    "step_lr": (lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5), "epoch"),
    "lambda_lr": (lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.93**step), "step"),
    "plateau": (
        lambda optimizer: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=0.3),
        "epoch",
    ),
}


def _data():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(160, 4, generator=generator)
    targets = (inputs[:, 0] + 0.5 * inputs[:, 1] > 0).long()
    train = [(inputs[i : i + 32], targets[i : i + 32]) for i in range(0, 128, 32)]
    return train, [(inputs[128:], targets[128:])]


def _model():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def _sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.5, momentum=0.9)


def _torch_loop(name, epochs):
    """The loop torch's documentation writes: step the scheduler after the optimizer (per step or per epoch)."""
    factory, interval = LR_SCHEDULERS[name]
    train, val = _data()
    model = _model()
    optimizer = _sgd(model.parameters())
    scheduler = factory(optimizer)
    lrs = []
    for _ in range(epochs):
        model.train()
        for inputs, targets in train:
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            if interval == "step":
                scheduler.step()
        model.eval()
        with torch.no_grad():
            val_loss = nn.functional.cross_entropy(model(val[0][0]), val[0][1]).item()
        if name == "plateau":
            scheduler.step(val_loss)
        elif interval == "epoch":
            scheduler.step()
    return model, lrs


class _LrTrainer(trainwell.Trainer):
    """Records the lr each training step is taken at."""

    lrs: list = []

    def train_step(self, batch):
        self.lrs = [*self.lrs, self.optimizer.param_groups[0]["lr"]]
        return super().train_step(batch)


class _CrashAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_batch_end(self, trainer, batch_index, loss, **kwargs):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def _trainwell(name, epochs, run_dir=None, resume=None, callbacks=()):
    factory, interval = LR_SCHEDULERS[name]
    train, val = _data()
    model = _model()
    trainer = _LrTrainer(
        epochs=epochs,
        optimizer=_sgd,
        schedule=factory,
        schedule_interval=interval,
        max_grad_norm=None,
        early_stopping_patience=None,
        restore_best_weights=False,
        run_dir=run_dir,
        checkpoint_every_steps=3 if run_dir else None,
        callbacks=list(callbacks),
        progress=False,
    )
    trainer.fit(model, train, val, resume=resume)
    return trainer, model


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LR_SCHEDULERS))
def test_a_torch_scheduler_matches_torchs_own_loop_step_for_step_and_resumes_exactly(name, tmp_path, one_thread):
    epochs = 6
    plain, plain_lrs = _torch_loop(name, epochs)
    assert len(set(plain_lrs)) > 2  # the schedule does change the rate
    trainer, model = _trainwell(name, epochs)
    assert trainer.lrs == plain_lrs
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(model.parameters(), plain.parameters()))
    # An epoch's row: the optimizer's rate when its training pass ended (a per-step scheduler has stepped).
    rows = [row["lr"] for row in trainer.history]
    assert rows == (plain_lrs[3::4] if LR_SCHEDULERS[name][1] == "epoch" else plain_lrs[4::4] + rows[-1:])

    with pytest.raises(KeyboardInterrupt):
        _trainwell(name, epochs, tmp_path / "run", callbacks=[_CrashAt(11)])  # after step 11; checkpoint at 9
    resumed, resumed_model = _trainwell(name, epochs, tmp_path / "run", resume="auto")
    assert resumed.lrs == plain_lrs[9:]
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(resumed_model.parameters(), plain.parameters()))
    saved = resumed.checkpoint()["trainer"]["schedule"]["scheduler"]
    assert saved == resumed.learning_rates.scheduler.state_dict() and saved["last_epoch"] in (6, 24)


def test_a_plateau_scheduler_steps_on_the_monitored_metric(one_thread):
    train, val = _data()
    seen = []

    class Recording(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics, epoch=None):
            seen.append(metrics)
            super().step(metrics, epoch)

    trainer = trainwell.Trainer(
        epochs=3, schedule=lambda o: Recording(o, mode="max"), monitor="val_accuracy", progress=False
    )
    trainer.fit(_model(), train, val)
    assert seen == [row["val_accuracy"] for row in trainer.history]


def test_a_scheduler_factory_is_checked():
    train, val = _data()
    with pytest.raises(ConfigError, match=r"schedule=<.*> returned int: expected a torch LR scheduler"):
        trainwell.fit(_model(), train, schedule=lambda optimizer: 3, progress=False)
    other = torch.optim.SGD(_model().parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="returned a scheduler of another optimizer"):
        trainwell.fit(
            _model(), train, schedule=lambda optimizer: torch.optim.lr_scheduler.StepLR(other, 2), progress=False
        )
    with pytest.raises(ConfigError, match=r"warmup_fraction=0.1 with schedule=.*Build the warm-up into it"):
        trainwell.fit(
            _model(),
            train,
            schedule=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, 2),
            warmup_fraction=0.1,
            progress=False,
        )


class _SetLr(Callback):
    """Sets the lr at the start of epoch ``epoch``, as a user's callback would."""

    def __init__(self, epoch, lr):
        self.epoch, self.lr = epoch, lr

    def on_epoch_begin(self, trainer, epoch, **kwargs):
        if epoch == self.epoch:
            for group in trainer.optimizer.param_groups:
                group["lr"] = self.lr


def test_an_lr_set_by_a_callback_is_not_overwritten_by_a_torch_scheduler(one_thread):
    train, val = _data()
    trainer = _LrTrainer(
        epochs=3,
        optimizer=_sgd,
        schedule=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step),
        callbacks=[_SetLr(2, 0.01)],
        progress=False,
    )
    trainer.fit(_model(), train, val)
    # Epoch 2 starts at the rate the callback set, and the schedule goes on from it (x 0.9 per step).
    assert trainer.lrs[4] == pytest.approx(0.01)
    assert trainer.lrs[5:8] == pytest.approx([0.01 * 0.9, 0.01 * 0.9**2, 0.01 * 0.9**3])
    assert trainer.lrs[3] == pytest.approx(0.5 * 0.9**3)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_an_lr_set_by_a_callback_is_kept_by_the_built_in_schedules(schedule, one_thread):
    from trainwell.loop.schedules import build_schedule

    train, val = _data()
    trainer = _LrTrainer(epochs=3, lr=0.1, schedule=schedule, callbacks=[_SetLr(2, 0.01)], progress=False)
    trainer.fit(_model(), train, val)
    shape = build_schedule(schedule, 12, trainer.config.warmup_fraction)
    assert trainer.lrs[:4] == pytest.approx([0.1 * shape(step) for step in range(4)])
    # From the callback's rate, the schedule's shape: the new peak is 0.01 / shape(4).
    assert trainer.lrs[4] == pytest.approx(0.01)
    assert trainer.lrs[4:] == pytest.approx([0.01 / shape(4) * shape(step) for step in range(4, 12)])


def test_schedule_interval_epoch_holds_a_built_in_schedule_for_each_epoch(one_thread):
    train, val = _data()
    trainer = _LrTrainer(epochs=3, lr=0.1, schedule="cosine", schedule_interval="epoch", progress=False)
    trainer.fit(_model(), train, val)
    shape = cosine(12)
    assert trainer.lrs == pytest.approx([0.1 * shape(4 * (step // 4)) for step in range(12)])


def test_patience_counts_once_the_lr_has_annealed_to_half_its_peak():
    from trainwell.config import TrainConfig
    from trainwell.loop.schedules import onecycle, patience_start_epoch

    for epochs in (10, 40):
        config = TrainConfig(schedule="onecycle", epochs=epochs)
        start = patience_start_epoch(config, steps_per_epoch=23, total_steps=23 * epochs)
        schedule = onecycle(23 * epochs)
        assert schedule(start * 23 - 1) <= 0.5 < schedule((start - 1) * 23 - 1)
        assert start > 0.3 * epochs  # never inside the warm-up
    assert patience_start_epoch(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=10, total_steps=100) == 6
    assert patience_start_epoch(TrainConfig(schedule="constant", epochs=40), steps_per_epoch=23, total_steps=920) == 1
    assert patience_start_epoch(TrainConfig(schedule="onecycle", epochs=40), steps_per_epoch=None, total_steps=None) == 1
    # max_steps ends the run early: the schedule spans its steps, and annealing happens within them.
    assert patience_start_epoch(TrainConfig(schedule="cosine", epochs=10, max_steps=50), 10, 50) == 3


def test_the_trainer_gives_early_stopping_its_start(classifier, blob_loaders):
    import trainwell
    from trainwell.callbacks import EarlyStopping

    trainer = trainwell.Trainer(epochs=20, lr=1e-2, schedule="onecycle", progress=False)
    trainer.fit(classifier, *blob_loaders)
    stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    assert stopper.start_epoch > 6
