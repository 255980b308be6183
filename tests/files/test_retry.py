import pytest

from trainwell.files.retry import RetryPolicy, retry_call


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.waits = []

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def _failing(times, error=ConnectionError("reset")):
    calls = []

    def operation():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return len(calls)

    return operation, calls


def test_default_policy_is_three_attempts_from_one_second_doubling():
    assert RetryPolicy().delays(random_source=lambda: 0.0) == [1.0, 2.0]
    assert RetryPolicy().delays(random_source=lambda: 1.0) == pytest.approx([1.1, 2.2])


def test_transient_failures_are_retried_with_backoff():
    clock = FakeClock()
    operation, calls = _failing(2)
    assert retry_call(operation, retry_on=(ConnectionError,), sleep=clock.sleep) == 3
    assert len(clock.waits) == 2
    assert 1.0 <= clock.waits[0] <= 1.1 and 2.0 <= clock.waits[1] <= 2.2


def test_gives_up_after_the_last_attempt_with_the_last_error():
    clock = FakeClock()
    operation, calls = _failing(5)
    with pytest.raises(ConnectionError, match="reset"):
        retry_call(operation, retry_on=(ConnectionError,), sleep=clock.sleep)
    assert len(calls) == 3 and len(clock.waits) == 2


def test_permanent_errors_are_not_retried():
    clock = FakeClock()
    operation, calls = _failing(5, PermissionError("denied"))
    with pytest.raises(PermissionError):
        retry_call(operation, retry_on=(OSError,), give_up_on=(PermissionError,), sleep=clock.sleep)
    assert len(calls) == 1 and clock.waits == []


def test_other_errors_propagate_at_once():
    operation, calls = _failing(1, ValueError("bad"))
    with pytest.raises(ValueError):
        retry_call(operation, retry_on=(OSError,), sleep=FakeClock().sleep)
    assert len(calls) == 1


def test_configurable_policy_and_cap():
    policy = RetryPolicy(attempts=5, base_delay_s=0.5, factor=3.0, jitter=0.0, max_delay_s=5.0)
    assert policy.delays() == [0.5, 1.5, 4.5, 5.0]
    with pytest.raises(ValueError, match="attempts=0"):
        RetryPolicy(attempts=0)


def test_retries_are_logged(caplog):
    operation, _ = _failing(1)
    with caplog.at_level("WARNING", logger="trainwell"):
        retry_call(operation, retry_on=(ConnectionError,), sleep=FakeClock().sleep, describe="download of x")
    assert "download of x failed (attempt 1 of 3: reset); retrying in 1." in caplog.text
