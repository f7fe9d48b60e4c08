"""A circuit breaker, so a dead embedding server is not hammered: pure, with an injectable clock.

Closed: calls go through. After `threshold` consecutive transient failures it opens: calls fail at
once for `cooldown_s` (doubling each time it re-opens, up to `max_cooldown_s`). Then it is half
open: one call goes through as a probe; success closes it, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_s: float = 5.0,
        max_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.clock = clock
        self.failures = 0
        self.cooldown_s = cooldown_s
        self.open_until: float | None = None
        self.probing = False
        self.lock = threading.Lock()

    @property
    def state(self) -> str:
        with self.lock:
            if self.open_until is None:
                return "closed"
            return "open" if self.clock() < self.open_until else "half-open"

    def allow(self) -> float | None:
        """None if a call may go now; else the seconds until the next probe."""
        with self.lock:
            if self.open_until is None:
                return None
            wait = self.open_until - self.clock()
            if wait > 0 or self.probing:
                return max(wait, 0.0)
            self.probing = True  # half open: this caller is the probe
            return None

    def record_success(self) -> bool:
        """Returns True when this success closed an open circuit."""
        with self.lock:
            was_open = self.open_until is not None
            self.failures, self.open_until, self.probing = 0, None, False
            self.cooldown_s = self.base_cooldown_s
            return was_open

    def release_probe(self) -> None:
        """The probe ended in neither success nor an outage (the server answered, about the
        input): let the next caller probe."""
        with self.lock:
            self.probing = False

    def record_failure(self) -> bool:
        """Returns True when this failure opened (or re-opened) the circuit."""
        with self.lock:
            self.failures += 1
            if self.probing or (self.open_until is None and self.failures >= self.threshold):
                if self.probing:
                    self.cooldown_s = min(self.cooldown_s * 2, self.max_cooldown_s)
                self.open_until = self.clock() + self.cooldown_s
                self.probing = False
                return True
            return False
