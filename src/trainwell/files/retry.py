"""Retry with exponential backoff for transient failures (downloads, checkpoint writes).

The policy: 3 attempts, 1,000 ms before the second, doubling after that, with random jitter so
that many processes retrying at once do not stay in step. Built on tenacity; the sleep function
is injectable, so tests check the timing with a fake clock instead of sleeping.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger("trainwell")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry.

    Args:
        attempts: Tries in all, including the first (≥ 1).
        base_delay_s: Wait before the second try, in seconds.
        factor: Each further wait is this many times the previous one.
        jitter: Each wait is stretched by a random share in ``[0, jitter]`` of itself.
        max_delay_s: Cap on any single wait.

    Example:
        >>> RetryPolicy().delays(random_source=lambda: 0.0)
        [1.0, 2.0]
    """

    attempts: int = 3
    base_delay_s: float = 1.0
    factor: float = 2.0
    jitter: float = 0.1
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts={self.attempts} is out of range: expected an integer ≥ 1.")
        if self.base_delay_s < 0 or self.factor < 1 or self.jitter < 0 or self.max_delay_s < 0:
            raise ValueError(
                f"RetryPolicy(base_delay_s={self.base_delay_s}, factor={self.factor}, jitter={self.jitter}, "
                f"max_delay_s={self.max_delay_s}) is invalid: expected delays ≥ 0, factor ≥ 1 and jitter ≥ 0."
            )

    def delay(self, retry_number: int, random_source: Callable[[], float] = random.random) -> float:
        """The wait before retry ``retry_number`` (1 for the second attempt)."""
        plain = self.base_delay_s * self.factor ** (retry_number - 1)
        return min(plain * (1.0 + self.jitter * random_source()), self.max_delay_s)

    def delays(self, random_source: Callable[[], float] = random.random) -> list[float]:
        """Every wait the policy would make if all attempts failed."""
        return [self.delay(n, random_source) for n in range(1, self.attempts)]


DEFAULT_POLICY = RetryPolicy()


def retry_call(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    give_up_on: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], Any] = time.sleep,
    describe: str = "operation",
) -> T:
    """Call ``fn`` until it succeeds or the policy's attempts run out.

    Args:
        fn: The operation; called with no arguments.
        policy: Attempts and waits.
        retry_on: Exceptions worth retrying (transient failures).
        give_up_on: Exceptions among ``retry_on`` that are permanent (e.g. PermissionError):
            raised at once.
        sleep: Waits the given number of seconds (tests pass a fake clock's sleep).
        describe: What the operation is, for the log.

    Returns:
        What ``fn`` returned.

    Raises:
        The last exception when every attempt failed, or a permanent one at once.

    Example:
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("reset")
        ...     return "ok"
        >>> waits = []
        >>> retry_call(flaky, retry_on=(ConnectionError,), sleep=waits.append)
        'ok'
        >>> len(waits)
        2
    """
    import tenacity

    def worth_retrying(error: BaseException) -> bool:
        return isinstance(error, retry_on) and not isinstance(error, give_up_on)

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.delay(state.attempt_number)

    def log_retry(state: tenacity.RetryCallState) -> None:
        logger.warning(
            "%s failed (attempt %d of %d: %s); retrying in %.1f s.",
            describe,
            state.attempt_number,
            policy.attempts,
            state.outcome.exception(),
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(worth_retrying),
        before_sleep=log_retry,
        sleep=sleep,
        reraise=True,
    )
    return retrying(fn)
