import pytest
import torch

from trainwell import DivergenceError
from trainwell.reliability.divergence import NonFiniteGuard


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
