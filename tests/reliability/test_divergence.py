import pytest
import torch

from trainwell import DivergenceError
from trainwell.reliability.divergence import NonFiniteGuard, check_finite_end


def test_host_mode_counts_and_resets_on_a_finite_step():
    guard = NonFiniteGuard(max_consecutive=3, advice="Lower lr.")
    for finite in (False, False, True, False):
        guard.observe(finite, step=0)
    assert (guard.skipped, guard.consecutive) == (3, 1)


def test_host_mode_raises_with_advice_after_too_many_in_a_row():
    guard = NonFiniteGuard(max_consecutive=2, advice="Lower lr (now 0.1).")
    guard.observe(False, step=4)
    with pytest.raises(DivergenceError, match=r"non-finite for 2 steps in a row \(up to step 5.*Lower lr \(now 0.1\)"):
        guard.observe(False, step=5)


def test_device_mode_finds_the_longest_run_between_flushes():
    guard = NonFiniteGuard(max_consecutive=3)
    for bad in (1, 1, 0, 1, 1, 0):
        guard.observe_on_device(torch.tensor(bool(bad)))
    guard.flush(step=6)
    assert (guard.skipped, guard.consecutive) == (4, 0)
    for bad in (1, 1, 1):
        guard.observe_on_device(torch.tensor(bool(bad)))
    with pytest.raises(DivergenceError, match="3 steps in a row"):
        guard.flush(step=9)


def test_device_mode_carries_a_run_across_flushes():
    guard = NonFiniteGuard(max_consecutive=3)
    for bad in (0, 1, 1):
        guard.observe_on_device(torch.tensor(bool(bad)))
    guard.flush(step=3)
    guard.observe_on_device(torch.tensor(True))
    with pytest.raises(DivergenceError):
        guard.flush(step=4)


def test_on_diverged_replaces_the_error_and_the_count_starts_again():
    calls = []
    guard = NonFiniteGuard(max_consecutive=2, on_diverged=lambda run, step: calls.append((run, step)))
    for step in range(5):
        guard.observe(False, step=step)
    assert calls == [(2, 1), (2, 3)] and guard.consecutive == 1 and guard.skipped == 5


def test_reason_and_kind_of_bad_step_appear_in_messages():
    messages = []
    guard = NonFiniteGuard(max_consecutive=1, bad="non-finite or spiking", on_skip=lambda m, *a, skipped: messages.append(m % a))
    with pytest.raises(DivergenceError, match="were non-finite or spiking for 1 steps in a row"):
        guard.observe(False, step=3, reason="Loss spike (9, over 3x its running mean)")
    assert messages == ["Loss spike (9, over 3x its running mean) at step 3: update skipped (1 in a row, 1 allowed)."]


def test_the_advice_is_written_when_the_error_is_raised():
    lr = [0.1]
    guard = NonFiniteGuard(max_consecutive=1, advice=lambda: f"Lower lr (now {lr[0]:.3g}).")
    lr[0] = 0.0125  # cut by rollbacks meanwhile
    with pytest.raises(DivergenceError, match=r"Lower lr \(now 0\.0125\)"):
        guard.observe(False, step=9)


def test_a_model_with_non_finite_weights_or_untouched_by_every_step_is_refused_at_the_end():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    check_finite_end(model, steps=10, skipped=9)  # finite, and one step was taken
    with torch.no_grad():
        model[0].weight[0, :] = float("-inf")
        model[1].running_var[1] = float("nan")
    with pytest.raises(DivergenceError) as caught:
        check_finite_end(model, steps=10, skipped=0, advice="Lower lr.")
    assert "non-finite values in 0.weight (2 of 6 values), 1.running_var (1 of 3 values), after 10 steps" in str(caught.value)
    assert str(caught.value).endswith("Lower lr.")
    with pytest.raises(DivergenceError, match="all 4 steps had a non-finite loss or gradient and were skipped"):
        check_finite_end(torch.nn.Linear(2, 1), steps=4, skipped=4)
    check_finite_end(torch.nn.Linear(2, 1), steps=0, skipped=0)  # nothing trained yet is no failure
