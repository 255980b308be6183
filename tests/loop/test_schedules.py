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
