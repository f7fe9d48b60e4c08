"""How long to wait after an outage (of the database or the backend) before trying again.

One rule everywhere: exponential backoff with full jitter, capped, and never shorter than the
outage's own hint (a circuit breaker's next probe, a server's Retry-After). Backoff counts the
attempts so that its callers keep no retry state of their own.
"""

from __future__ import annotations

import random


def transient_delay_s(attempt: int, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to 1 s, then 2, 4 ... max_s."""
    ceiling = min(max_s, 2.0 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Backoff:
    """The attempts at one thing (a pass, the start-up, a request), and the wait before each."""

    def __init__(self, attempts: int | None, max_s: float) -> None:
        self.attempts = attempts  # None: until stopped (the daemon waiting for its database)
        self.max_s = max_s
        self.attempt = 0

    def next_delay_s(self, hint_s: float | None = None) -> float | None:
        """Count a failed attempt; the wait before the next one (at least the outage's hint),
        or None when no attempt is left."""
        self.attempt += 1
        if self.attempts is not None and self.attempt >= self.attempts:
            return None
        delay = transient_delay_s(self.attempt, self.max_s)
        return max(delay, hint_s) if hint_s else delay
