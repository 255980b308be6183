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


def test_patience_counts_once_the_lr_has_annealed_to_half_its_peak():
    from trainwell.config import TrainConfig
    from trainwell.loop.schedules import onecycle, patience_start_epoch

    for epochs in (10, 40):
        config = TrainConfig(schedule="onecycle", epochs=epochs)
        start = patience_start_epoch(config, steps_per_epoch=23)
        schedule = onecycle(23 * epochs)
        assert schedule(start * 23 - 1) <= 0.5 < schedule((start - 1) * 23 - 1)
        assert start > 0.3 * epochs  # never inside the warm-up
    assert patience_start_epoch(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=10) == 6
    assert patience_start_epoch(TrainConfig(schedule="constant", epochs=40), steps_per_epoch=23) == 1
    assert patience_start_epoch(TrainConfig(schedule="onecycle", epochs=40), steps_per_epoch=None) == 1


def test_the_trainer_gives_early_stopping_its_start(classifier, blob_loaders):
    import trainwell
    from trainwell.callbacks import EarlyStopping

    trainer = trainwell.Trainer(epochs=20, lr=1e-2, schedule="onecycle", progress=False)
    trainer.fit(classifier, *blob_loaders)
    stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    assert stopper.start_epoch > 6
