"""Retry arithmetic."""

from __future__ import annotations

import pytest

from durable import RetryPolicy
from durable.errors import InvalidArgument


def test_fixed_backoff_waits_the_same_each_time() -> None:
    policy = RetryPolicy(backoff="fixed", initial_delay=2.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [2.0, 2.0, 2.0]


def test_linear_backoff_grows_by_the_initial_delay() -> None:
    policy = RetryPolicy(backoff="linear", initial_delay=1.5)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.5, 3.0, 4.5]


def test_exponential_backoff_multiplies_and_is_capped() -> None:
    policy = RetryPolicy(backoff="exponential", initial_delay=1, multiplier=3, max_delay=20)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 3, 9, 20]


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(backoff="fixed", initial_delay=10, jitter=0.2)
    assert policy.delay(1, draw=0.0) == pytest.approx(8.0)
    assert policy.delay(1, draw=1.0) == pytest.approx(12.0)
    assert 8.0 <= policy.delay(1) <= 12.0


def test_retries_stop_at_max_attempts_and_respect_exception_filters() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(ValueError,), non_retryable=(KeyError,))
    assert policy.retries(ValueError(), 1)
    assert policy.retries(ValueError(), 2)
    assert not policy.retries(ValueError(), 3)
    assert not policy.retries(TypeError(), 1)


def test_non_retryable_wins_over_retry_on() -> None:
    class Fatal(ValueError):
        pass

    policy = RetryPolicy(max_attempts=5, retry_on=(ValueError,), non_retryable=(Fatal,))
    assert not policy.retries(Fatal(), 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff": "cubic"}, {"initial_delay": -1}, {"jitter": 2}],
)
def test_bad_policies_are_refused_with_a_clear_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_jitter_never_exceeds_max_delay() -> None:
    policy = RetryPolicy(backoff="fixed", initial_delay=10, max_delay=10, jitter=0.5)
    assert policy.delay(1, draw=1.0) == 10
