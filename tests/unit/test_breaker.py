"""The circuit breaker opens after repeated outages, lets one probe in, and closes on success."""

from __future__ import annotations

from embedkeeper.backends.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_the_threshold_and_fails_fast():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown_s=10, clock=clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == "open"
    assert breaker.allow() == 10
    clock.now = 4
    assert breaker.allow() == 6


def test_one_probe_after_the_cooldown_then_closed_on_success():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now = 10
    assert breaker.state == "half-open"
    assert breaker.allow() is None  # this caller probes
    assert breaker.allow() == 0.0  # the others wait for the probe
    assert breaker.record_success() is True
    assert breaker.state == "closed"
    assert breaker.allow() is None


def test_a_failed_probe_reopens_with_a_longer_cooldown_capped():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=10, max_cooldown_s=15, clock=clock)
    breaker.record_failure()
    clock.now = 10
    assert breaker.allow() is None
    assert breaker.record_failure() is True  # the probe failed: open again, for longer
    assert breaker.allow() == 15
    clock.now = 25
    assert breaker.allow() is None
    breaker.record_failure()
    assert breaker.allow() == 15  # capped
